"""Whether the installed torch, torchaudio, speechbrain and transformers load together.

torchaudio's compiled part loads only with the torch release it was built
for; a mismatched pair otherwise surfaces as an ``undefined symbol`` deep
in the first import of SpeechBrain. :func:`installation_problem` names the
pair and the fix instead. It reads versions from the package metadata first,
so a mismatch is reported without importing the broken library.
"""

import importlib
import importlib.metadata

FIX = ("Fix: install the verified set from the repository root: "
       "pip install -c constraints.txt -e '.[test]' (README, Setup); with your own CUDA build, "
       "install torch and torchaudio of the same release for that CUDA first.")

# Import order matters: each library is imported after the ones it builds on, so the
# first failure names the pair that does not load together.
LIBRARIES = ("torch", "torchaudio", "speechbrain", "transformers")


def release(version):
    """A version without its local build label: ``2.11.0+cu130`` -> ``2.11.0``.

    Arguments
    ---------
    version : str
        A version as the package metadata gives it.
    """
    return version.split("+", 1)[0]


def installed_versions(names=LIBRARIES):
    """The installed version of each library, ``None`` where it is not installed.

    Arguments
    ---------
    names : tuple of str
        The distributions to look up.
    """
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def installation_problem(versions=None, import_module=importlib.import_module):
    """A message saying which library or pair does not load, or ``None`` when all do.

    Arguments
    ---------
    versions : dict, optional
        ``{library: version or None}``; default what is installed.
    import_module : callable
        Imports a library by name (replaced in tests).

    Example
    -------
    >>> print(installation_problem({"torch": "2.11.0", "torchaudio": "2.11.1",
    ...                             "speechbrain": "1.1.2", "transformers": "5.24.0"}))
    torchaudio 2.11.1 does not match torch 2.11.0: ... Fix: ...
    """
    versions = installed_versions() if versions is None else versions
    missing = [name for name in LIBRARIES if versions.get(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed. {FIX}"
    torch, torchaudio = versions["torch"], versions["torchaudio"]
    if release(torch) != release(torchaudio):
        return (f"torchaudio {torchaudio} does not match torch {torch}: torchaudio's compiled "
                f"part loads only with the torch release it was built for. {FIX}")
    loaded = []
    for name in LIBRARIES:
        try:
            import_module(name)
        except Exception as error:  # noqa: BLE001 - any failure to load is the answer
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            beside = ", ".join(f"{other} {versions[other]}" for other in loaded)
            return (f"{name} {versions[name]} does not load"
                    f"{' with ' + beside if beside else ''}: "
                    f"{type(error).__name__}: {first_line}. {FIX}")
        loaded.append(name)
    return None


def check_installation():
    """Exit with :func:`installation_problem`'s message when the libraries do not load."""
    problem = installation_problem()
    if problem is not None:
        raise SystemExit(problem)
