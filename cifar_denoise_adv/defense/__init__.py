"""The denoiser as a defense in front of the classifier, attacked as attackers would.

`pipeline` builds defended(x) = classifier(denoiser(x)) (optionally with
Gaussian noise first) from the two runs' models; `loading` reads and checks
those runs; `evaluation` attacks the bare classifier and the defended
pipelines under each threat model; `checks` tests that the attacks did their
job; `figures` draws the results; `defend_job` is the `defend` app's job.
This package sits above both studies: it imports `denoising` and
`adversarial`, and neither imports it.
"""
