"""OPSIN (IUPAC name → structure) inside this process, one JVM per process.

A JVM per name costs about a second; in-process parsing through JPype runs at
thousands of names per second, so every caller goes through :func:`parse_names`.
We drive OPSIN's Java API with JPype directly instead of ``pyopsin.PyOpsin``
because PyOpsin prints every failure to stdout and defaults to the OPSIN 2.7
jar it bundles, while py2opsin ships the newer 2.9.0 jar we want.
"""

from __future__ import annotations

import glob
import os
import threading
from pathlib import Path

from seqtune.runtime import package_dir

# Names longer than this are never real answers; OPSIN's tokenizer is
# super-linear on some garbage, so such strings are rejected without parsing.
MAX_NAME_CHARS = 2000

_lock = threading.Lock()
_state: dict[str, object] = {}


class OpsinUnavailable(RuntimeError):
    """Java or the OPSIN jar is missing; the message says how to fix it."""


def find_opsin_jar() -> Path:
    """The OPSIN CLI jar: ``$SEQTUNE_OPSIN_JAR``, else py2opsin's (2.9.0), else pyopsin's (2.7.0)."""
    override = os.environ.get("SEQTUNE_OPSIN_JAR")
    if override:
        if not Path(override).is_file():
            raise OpsinUnavailable(f"SEQTUNE_OPSIN_JAR={override} does not exist")
        return Path(override)
    for package, pattern in (("py2opsin", "opsin-cli-*.jar"), ("pyopsin", "opsin_cli.jar")):
        pkg_dir = package_dir(package)
        if pkg_dir is None:
            continue
        jars = sorted(glob.glob(str(pkg_dir / pattern)))
        if jars:
            return Path(jars[-1])
    raise OpsinUnavailable(
        "No OPSIN jar found: install the chem extra (pip install 'seqtune[chem]', which brings py2opsin) "
        "or set SEQTUNE_OPSIN_JAR to an opsin-cli-*-jar-with-dependencies.jar"
    )


def opsin_version() -> str:
    """Version of the jar in use, read from its Maven metadata (no JVM needed)."""
    import zipfile

    try:
        with zipfile.ZipFile(find_opsin_jar()) as zf:
            props = zf.read("META-INF/maven/uk.ac.cam.ch.opsin/opsin-core/pom.properties").decode()
    except (OSError, KeyError, OpsinUnavailable, zipfile.BadZipFile):
        return "unknown"
    for line in props.splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    return "unknown"


def java_available() -> bool:
    """Whether a JVM can be found for OPSIN (without starting one)."""
    try:
        import jpype

        return bool(jpype.getDefaultJVMPath())
    except Exception:
        return False


def _start() -> tuple[object, object]:
    with _lock:
        if "nts" in _state:
            return _state["nts"], _state["config"]
        try:
            import jpype
        except ImportError as exc:  # pragma: no cover - jpype comes with pyopsin
            raise OpsinUnavailable("jpype1 is not installed (pip install 'seqtune[chem]')") from exc
        jar = str(find_opsin_jar())
        if not jpype.isJVMStarted():
            try:
                jvm_path = jpype.getDefaultJVMPath()
            except Exception as exc:
                raise OpsinUnavailable(
                    "No Java runtime found for OPSIN: run scripts/setup_chem.sh "
                    "(apt-get install -y default-jre-headless) or set JAVA_HOME"
                ) from exc
            # A small heap is plenty for OPSIN and keeps one JVM per worker cheap. interrupt=False:
            # Ctrl-C raises KeyboardInterrupt in Python, so a build's clean-up runs and the CLI exits
            # 130; with JPype's default the JVM halts the process on the spot, skipping both.
            jpype.startJVM(jvm_path, "-Xmx1g", "-Xss8m", classpath=[jar], convertStrings=False, interrupt=False)
        try:
            opsin = jpype.JPackage("uk").ac.cam.ch.wwmm.opsin
            nts = opsin.NameToStructure.getInstance()
            config = opsin.NameToStructureConfig()
        except Exception as exc:
            raise OpsinUnavailable(
                "A JVM was already running in this process without the OPSIN jar on its classpath"
            ) from exc
        _state["nts"], _state["config"] = nts, config
        return nts, config


def ensure_started() -> None:
    """Start the JVM now (e.g. in a worker initializer) so the first batch is not slowed."""
    _start()


def parse_name(name: str | None) -> str | None:
    """SMILES for one IUPAC name as OPSIN writes it, or ``None`` when OPSIN cannot parse it."""
    return parse_names([name])[0]


def parse_names(names: list[str | None]) -> list[str | None]:
    """OPSIN SMILES for each name (``None`` for unparsable, empty, oversize or non-string input)."""
    nts, config = _start()
    out: list[str | None] = []
    for name in names:
        if not isinstance(name, str):
            out.append(None)
            continue
        text = name.strip()
        if not text or len(text) > MAX_NAME_CHARS or "\x00" in text:
            out.append(None)
            continue
        try:
            smiles = nts.parseChemicalName(text, config).getSmiles()
        except Exception:  # Java exceptions and unencodable surrogates alike
            out.append(None)
            continue
        out.append(str(smiles) if smiles is not None else None)
    return out
