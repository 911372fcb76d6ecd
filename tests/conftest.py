from pathlib import Path

import pytest

MNIST_NPZ = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist.npz"


@pytest.fixture(scope="session")
def mnist_npz() -> Path:
    """The full MNIST copy beside the project; tests that need it skip when it is absent."""
    if not MNIST_NPZ.is_file():
        pytest.skip(f"full MNIST not found at {MNIST_NPZ} (see ../shared/data/README.md)")
    return MNIST_NPZ


@pytest.fixture(scope="session")
def sample_data():
    """The offline 5,000 real digits shipped with the package, split 4,000 / 1,000."""
    from training.data import load_sample

    return load_sample()
