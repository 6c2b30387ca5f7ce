"""Denoising and adversarial examples on CIFAR-10 with TensorFlow/Keras."""

__version__ = "0.1.0"
