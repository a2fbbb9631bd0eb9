"""Shared fixtures: reference-model outputs computed once per session (no training in tests)."""
import pytest


@pytest.fixture(scope="session")
def fashion_logits():
    """Reference CNN logits on the first 2000 Fashion-MNIST test images (never seen in training) and labels."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    from adapters import reference
    from adapters.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    cam = reference.load("fashion_cnn", progress=False)
    return cam.predict_logits(images[:2000]), labels[:2000], images[:2000]


@pytest.fixture(scope="session")
def digits_heldout():
    pytest.importorskip("torch")
    from adapters import reference
    from adapters.datasets import load_digits_images

    images, labels = load_digits_images(28)
    _, held = reference.digits_split()
    cam = reference.load("digits_cnn", progress=False)
    return cam.predict_proba(images[held]), labels[held]
