from pathlib import Path

import pytest

MNIST_NPZ = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist.npz"


@pytest.fixture(scope="session")
def mnist_npz() -> Path:
    """The full MNIST copy beside the project; tests that need it skip when it is absent."""
    if not MNIST_NPZ.is_file():
        pytest.skip(f"full MNIST not found at {MNIST_NPZ} (see ../shared/data/README.md)")
    return MNIST_NPZ


@pytest.fixture
def done_run():
    """A factory: ``done_run(store, card)`` adds a run with ``card`` to the run store, finishes it as done (as a worker
    would) and makes its folder; it returns the run id and the path where its model.pt belongs."""
    from training.store import Owner

    def make(store, card: dict) -> tuple[int, Path]:
        run_id = store.submit(card)
        owner = Owner.me()
        assert store.claim(owner).id == run_id
        store.finish(run_id, owner, "done")
        store.run_dir(run_id).mkdir(parents=True)
        return run_id, store.run_dir(run_id) / "model.pt"

    return make


@pytest.fixture(scope="session")
def sample_data():
    """The offline 5,000 real digits shipped with the package, split 4,000 / 1,000."""
    from training.data import load_sample

    return load_sample()
