import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from tiny import save_tiny

    return save_tiny("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    from tiny import save_tiny

    return save_tiny("gpt2", tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from seqtune.modeling import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def gemma_tokenizer():
    from seqtune.modeling import load_tokenizer

    return load_tokenizer("gemma3-270m")


@pytest.fixture
def fresh_accelerator_state():
    """Accelerate keeps one device per process: a test that pretends the machine is a CPU must
    not meet the CUDA state an earlier test left on a GPU machine (nor leave its own behind)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
