"""The one reader of a saved run setting: present, absent and malformed sections."""

from seqtune.model_meta import saved_setting
from seqtune.modeling import ModelInfo
from seqtune.prompts import get_format

META = {"config": {"data": {"input_order": "name", "input_column": "smiles"},
                   "generate": {"max_new_tokens": 96}, "model": "not-a-section"}}


def test_saved_setting_walks_the_dotted_key() -> None:
    assert saved_setting(META, "data.input_order") == "name"
    assert saved_setting(META, "generate.max_new_tokens", 128) == 96


def test_saved_setting_falls_back_on_anything_missing_or_malformed() -> None:
    assert saved_setting(META, "data.output_order", "as_is") == "as_is"
    assert saved_setting(META, "train.lr") is None
    assert saved_setting(META, "model.init", "x") == "x"  # "model" is text, not a section
    assert saved_setting({}, "data.input_column") is None
    assert saved_setting({"config": None}, "data.input_column", 1) == 1


def test_model_info_reads_its_own_saved_config() -> None:
    info = ModelInfo(get_format("plain"), "iupac2smiles", "", "tiny", META)
    assert info.saved("data.input_column") == "smiles"
    assert ModelInfo(get_format("plain"), "toy", "", "tiny", {}).saved("data.input_order") is None


def test_read_saved_gives_an_empty_object_for_any_unreadable_file(tmp_path) -> None:
    from seqtune.model_meta import FORMAT_FILE, read_saved

    assert read_saved(tmp_path / "absent") == {}
    (tmp_path / FORMAT_FILE).write_text("{truncated", encoding="utf-8")
    assert read_saved(tmp_path) == {}
    (tmp_path / FORMAT_FILE).write_text("[1, 2]", encoding="utf-8")
    assert read_saved(tmp_path) == {}
    (tmp_path / FORMAT_FILE).write_bytes(b"\xff\xfe")
    assert read_saved(tmp_path) == {}
    (tmp_path / FORMAT_FILE).write_text('{"config": {"model": {"name": "base"}}}', encoding="utf-8")
    assert saved_setting(read_saved(tmp_path), "model.name") == "base"
