"""Guided decoding (generate.guide): a beam is dropped once what it has written cannot be the input
molecule's InChI, and a right InChI is never dropped at any point of its writing."""

import pytest

from seqtune.errors import ConfigError

# Plain, aromatic, mobile-hydrogen, stereo, charged, several-component, one-atom, ring and
# disconnected-metal molecules.
MOLECULES = ["CCO", "OC(=O)c1ccccc1", "CS(=O)(=O)c1nc2ncncc2[nH]1", "C[C@H](N)C(=O)O", "CC[N+](C)(CC)c1cccc(O)c1",
             "[Na+].[Cl-]", "C", "CC1CCCC(=O)C1", "Cc1cccc(C)c1", r"C/C=C/C(=O)O", "C[Si](C)(C)C#N",
             "N[C@@H](Cc1ccc(O)c(O)c1)C(=O)O", "Nc1ccc(C(=O)O)c(C(=O)O)c1", "[2H]C([2H])([2H])O",
             "CC[Sn](CC)(CC)CC",  # components multiplied ("4C2H5.Sn")
             "CC[n+]1c(C)oc2ccccc21", "CC(=O)[O-]", "S=C([S-])NCCNCCNC(=S)[S-]", "[NH3+]CC(=O)[O-]"]  # charged
ETHANOL = "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3"


@pytest.fixture(scope="module")
def ethanol():
    pytest.importorskip("rdkit")
    from seqtune.chem.inchi_prefix import prefix_check

    return prefix_check("CCO")


@pytest.mark.parametrize("smiles", MOLECULES)
def test_every_start_of_the_right_inchi_passes(smiles):
    pytest.importorskip("rdkit")
    from rdkit import Chem

    from seqtune.chem.inchi_prefix import prefix_check
    from seqtune.chem.molecules import inchi_from_mol

    inchi = inchi_from_mol(Chem.MolFromSmiles(smiles))
    check = prefix_check(smiles)
    start = len("InChI=1S/")
    assert [inchi[:i] for i in range(start, len(inchi) + 1) if not check(inchi[:i], False)] == []
    assert check(inchi, True)  # and it may end where it ends


def test_the_right_inchi_of_ethanol_passes_and_may_end(ethanol):
    assert ethanol(ETHANOL, False) and ethanol(ETHANOL, True)
    assert ethanol("InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H", False)  # "1H" may still become "1H3"
    assert not ethanol("InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H", True)  # but it may not end there


@pytest.mark.parametrize("start", [
    "InChI=1S/C3H",  # more carbons than the molecule has, before the formula is finished
    "InChI=1S/C2H6S/",  # other atoms
    "InChI=1S/C2H4O/",  # other hydrogens
    "InChI=1S/C2H6O/c1-3-2/",  # dimethyl ether's bonds: no C-O-C in ethanol
    "InChI=1S/C2H6O/c1-4",  # an atom past the third
    "InChI=1S/C2H6O/c2-1-3/",  # carbon 1 with two heavy neighbours, carbon 2 with one: fewer come first
    "InChI=1S/C2H6O/c1-2-1-",  # a bond said twice
    "InChI=1S/C2H6O/c1-1-",  # an atom bonded to itself
    "InChI=1S/C2H6O/c1-2-3/h3H,1H2,2H3/",  # three hydrogens on the carbon bonded to oxygen
    "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3,(H,",  # more hydrogens than the molecule has
    "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3/t",  # a stereo layer for an input without stereo
    "InChI=1S/C2H6O/c1-2-3/h3H,2H2x",  # text no /h layer has
    "InChI=1S/C2H6O/h",  # a molecule of three bonded atoms without its connections
])
def test_a_start_that_cannot_be_ethanol_is_dropped(ethanol, start):
    assert not ethanol(start, False)


def test_numbering_is_held_to_its_rule_about_single_atoms_not_made_canonical():
    pytest.importorskip("rdkit")
    from seqtune.chem.inchi_prefix import prefix_check

    check = prefix_check("CCCO")  # InChI=1S/C3H8O/c1-2-3-4/h4H,2-3H2,1H3
    assert check("InChI=1S/C3H8O/c3-2-1", False)  # carbon 1 at the chain's end, as propanol's methyl
    assert not check("InChI=1S/C3H8O/c3-2-1-4/", False)  # carbon 1 then has two heavy neighbours
    # Another numbering that keeps the rule passes: what is canonical is left to the model.
    assert check("InChI=1S/C3H8O/c1-3-2-4", False) and check("InChI=1S/C3H8O/c1-3-2-4/h4H,2-3H2,1H3", True)


def test_a_charged_inputs_formula_hydrogens_are_held_to_the_protons_inchi_may_move():
    pytest.importorskip("rdkit")
    from seqtune.chem.inchi_prefix import prefix_check

    # A benzoxazolium (12 hydrogens, +1) is written with 11 or 12; the model's 13 (a test miss) is dropped.
    oxazolium = prefix_check("CC[n+]1c(C)oc2ccccc21")
    assert oxazolium("InChI=1S/C10H12NO/", False) and oxazolium("InChI=1S/C10H11NO/", False)
    assert not oxazolium("InChI=1S/C10H13NO/", False) and not oxazolium("InChI=1S/C10H10NO/", False)
    # Acetate (3 hydrogens, -1) is written as acetic acid with a proton taken off (C2H4O2/p-1), or with 3.
    acetate = prefix_check("CC(=O)[O-]")
    assert acetate("InChI=1S/C2H4O2/", False) and acetate("InChI=1S/C2H3O2/", False)
    assert not acetate("InChI=1S/C2H5O2/", False) and not acetate("InChI=1S/C2H2O2/", False)


def test_a_mobile_hydrogen_group_holds_no_carbon():
    pytest.importorskip("rdkit")
    from seqtune.chem.inchi_prefix import prefix_check

    check = prefix_check("CC(=O)O")
    assert check("InChI=1S/C2H4O2/c1-2(3)4/h1H3,(H,3,4)", True)
    assert not check("InChI=1S/C2H4O2/c1-2(3)4/h1H3,(H,2,", False)
    assert not check("InChI=1S/C2H4O2/c1-2(3)4/h1H3,(H,3,3", False)  # nor an atom twice


def test_an_unreadable_input_is_not_judged():
    pytest.importorskip("rdkit")
    from seqtune.chem.inchi_prefix import prefix_check

    assert prefix_check("C1CC(") is None


class Letters:
    """Token i is the i-th letter; 0 ends the text."""

    eos_token_id = 0

    def batch_decode(self, ids, skip_special_tokens=True):
        return ["".join(chr(96 + i) for i in row if i) for row in ids.tolist()]


def _rows(*texts):
    import torch

    return torch.tensor([[0] + [ord(c) - 96 for c in t] for t in texts])  # a one-token prompt first


def test_the_search_drops_failing_beams_and_bars_ending_where_ending_fails():
    import torch

    from seqtune.inference.generate import _Prune

    def test(text, ends):
        return text.startswith("e") and (not ends or text == "eta")

    # two prompts of two beams each
    scores = _Prune(Letters(), [test, test], 1, str.strip)(_rows("eth", "ben", "ace", "eta"), torch.zeros(4, 27))
    assert [bool(torch.isinf(row).all()) for row in scores] == [False, True, True, False]
    assert torch.isinf(scores[0, 0]) and not torch.isinf(scores[0, 1:]).any()  # "eth" goes on but may not end
    assert not torch.isinf(scores[3]).any()  # "eta" may go on or end


def test_a_prompt_whose_every_beam_fails_ends_its_beams():
    import torch

    from seqtune.inference.generate import _Prune

    scores = _Prune(Letters(), [lambda text, ends: False], 1, str.strip)(_rows("ab", "cd"), torch.zeros(2, 27))
    assert (scores[:, 0] == 0).all() and torch.isinf(scores[:, 1:]).all()  # only the end of text is left to them


def test_guided_beams_never_write_what_their_test_refuses(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.inference.generate import generate

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    prompts = [tok("CCO ethanol")["input_ids"], tok("c1ccccc1")["input_ids"]]
    plain = generate(model, tok, prompts, num_beams=4, num_return=4, max_new_tokens=6, precision="fp32")
    refused = [beams[0] for beams in plain]  # each prompt's best beam, and every start of it, refused
    keep = [lambda text, ends, top=top: not (text and top.startswith(text)) for top in refused]
    guided = generate(model, tok, prompts, num_beams=4, num_return=4, max_new_tokens=6, precision="fp32", keep=keep)
    for top, beams in zip(refused, guided, strict=True):
        assert len(beams) == 4 and top not in beams
        assert not any(b and top.startswith(b) for b in beams)


def test_guide_is_refused_for_a_task_without_a_check(tmp_path):
    import seqtune.inference.decode as decode
    from seqtune.config import load_config
    from seqtune.inference.decode import DecodeSettings
    from seqtune.prompts import get_format

    with pytest.raises(ConfigError, match="generate.guide: guide checks the partial outputs of smiles2inchi, "
                                          "not of 'smiles2formula'"):
        load_config(None, ["data.task=smiles2formula", "generate.guide=true"])
    with pytest.raises(ConfigError, match="guide: .* not of 'smiles2formula'"):  # before any decoding
        decode.decode_rows(None, None, get_format("plain"), "smiles2formula", ["CCO"], ["i"], ["C2H6O"],
                           DecodeSettings(num_beams=2, guide=True))


def test_guided_tasks_are_the_tasks_with_a_check():
    pytest.importorskip("rdkit")
    from seqtune.chem import GUIDED_TASKS
    from seqtune.chem.tasks import TASKS

    assert set(GUIDED_TASKS) == {name for name, task in TASKS.items() if task.prefix_check is not None}
