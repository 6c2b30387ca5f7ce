"""The adversarial study: the classifier, the attacks and their jobs."""
