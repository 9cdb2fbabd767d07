"""Ground truth of every chemistry task on well-known molecules, and the baseline that produces it."""

from __future__ import annotations

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("openclatura")

from seqtune.chem import CHEM_TASKS, baseline, molecules, opsin, tasks  # noqa: E402

CAFFEINE = "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"
ASPIRIN = "CC(=O)OC1=CC=CC=C1C(=O)O"
IBUPROFEN = "CC(C)CC1=CC=C(C=C1)C(C)C(=O)O"
PARACETAMOL = "CC(=O)NC1=CC=C(C=C1)O"
L_ALANINE = "C[C@H](N)C(=O)O"
E_BUTENE = "C/C=C/C"

# What openclatura 0.4.x names them (checked by hand against IUPAC usage).
EXPECTED_NAMES = {
    CAFFEINE: "1,3,7-trimethyl-3,7-dihydro-1H-purine-2,6-dione",
    ASPIRIN: "2-(acetyloxy)benzoic acid",
    IBUPROFEN: "2-(4-(2-methylpropyl)phenyl)propanoic acid",
    PARACETAMOL: "N-(4-hydroxyphenyl)acetamide",
    L_ALANINE: "(2S)-2-aminopropanoic acid",
    E_BUTENE: "(2E)-but-2-ene",
}
needs_java = pytest.mark.skipif(not opsin.java_available(), reason="no Java runtime for OPSIN")

FORMULAS = {
    CAFFEINE: "C8H10N4O2",
    ASPIRIN: "C9H8O4",
    IBUPROFEN: "C13H18O2",
    PARACETAMOL: "C8H9NO2",
    L_ALANINE: "C3H7NO2",
}


def test_task_set_is_importable_without_heavy_deps():
    assert CHEM_TASKS == {
        "smiles2iupac",
        "iupac2smiles",
        "smiles2formula",
        "randomsmiles2canonical",
        "smiles2inchi",
    }


@needs_java
@pytest.mark.parametrize("smiles", list(EXPECTED_NAMES))
def test_smiles2iupac_names_round_trip_through_opsin(smiles):
    canonical = molecules.canonical_smiles(smiles)
    name = baseline.predict("smiles2iupac", [smiles])[0]
    assert name == EXPECTED_NAMES[smiles]
    assert tasks.make_example("smiles2iupac", canonical, name, 0) == (canonical, name)
    assert molecules.canonical_smiles(opsin.parse_name(name)) == canonical


@needs_java
def test_stereo_is_kept_in_both_directions():
    name = EXPECTED_NAMES[L_ALANINE]
    assert molecules.canonical_smiles(opsin.parse_name(name)) == "C[C@H](N)C(=O)O"
    # The enantiomer must not count as the same molecule.
    assert molecules.canonical_smiles(opsin.parse_name("(2R)-2-aminopropanoic acid")) != "C[C@H](N)C(=O)O"
    assert molecules.canonical_smiles(opsin.parse_name(EXPECTED_NAMES[E_BUTENE])) == "C/C=C/C"


@needs_java
def test_iupac2smiles_outputs_canonical_smiles():
    canonical = molecules.canonical_smiles(CAFFEINE)
    assert canonical == "Cn1c(=O)c2c(ncn2C)n(C)c1=O"
    assert tasks.make_example("iupac2smiles", canonical, EXPECTED_NAMES[CAFFEINE], 0) == (
        EXPECTED_NAMES[CAFFEINE],
        canonical,
    )
    assert baseline.predict("iupac2smiles", [EXPECTED_NAMES[CAFFEINE], "caffeine", "no such compound"]) == [
        canonical,
        canonical,
        "",
    ]


@pytest.mark.parametrize("smiles", list(FORMULAS))
def test_smiles2formula(smiles):
    canonical = molecules.canonical_smiles(smiles)
    assert tasks.make_example("smiles2formula", canonical, "x", 0) == (canonical, FORMULAS[smiles])
    assert baseline.predict("smiles2formula", [smiles]) == [FORMULAS[smiles]]


def test_smiles2inchi():
    canonical = molecules.canonical_smiles(CAFFEINE)
    _, inchi = tasks.make_example("smiles2inchi", canonical, "x", 0)
    assert inchi == "InChI=1S/C8H10N4O2/c1-10-4-9-6-5(10)7(13)12(3)8(14)11(6)2/h4H,1-3H3"
    _, inchi = tasks.make_example("smiles2inchi", molecules.canonical_smiles(L_ALANINE), "x", 0)
    assert inchi.startswith("InChI=1S/C3H7NO2/") and "/t2-/m0/s1" in inchi


def test_randomsmiles2canonical_is_seeded_and_same_molecule():
    canonical = molecules.canonical_smiles(IBUPROFEN)
    a = tasks.make_example("randomsmiles2canonical", canonical, "x", 0)
    assert a == tasks.make_example("randomsmiles2canonical", canonical, "x", 0)
    assert a[1] == canonical
    assert molecules.canonical_smiles(a[0]) == canonical
    inputs = {tasks.make_example("randomsmiles2canonical", canonical, "x", s)[0] for s in range(8)}
    assert len(inputs) > 1  # different seeds give different random SMILES


def test_baseline_on_invalid_input_returns_empty_strings():
    for task in sorted(CHEM_TASKS - {"iupac2smiles"}):
        assert baseline.predict(task, ["", "not a smiles", "C1CC"]) == ["", "", ""]


def test_parse_formula_is_order_insensitive_and_strict():
    assert molecules.parse_formula("C2H6O") == molecules.parse_formula("H6C2O")
    assert molecules.parse_formula("C2H3O2-")[1] == -1
    assert molecules.parse_formula("C2H6O") != molecules.parse_formula("C2H5O")
    for bad in ["", "garbage", "c2h6o", "C2 H6O", "Xx" * 200, None]:
        assert molecules.parse_formula(bad) is None


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError):
        tasks.make_example("smiles2vibes", "C", "methane", 0)


def test_naming_timeout_is_reported_not_raised():
    from seqtune.chem import naming

    big = "CC(C)CC1=CC=C(C=C1)C(C)C(=O)NC2=CC=C(C=C2)C3=CC=C(C=C3)C(=O)OCC4=CC=CC=C4"
    assert naming.name_smiles(big, timeout_s=1e-5) == (None, "naming_timeout")
    assert naming.name_smiles("CCO")[0] == "ethanol"
    assert naming.name_smiles("[Fe]") == (None, "naming_failed")
