"""vocdet's workarounds that reach into library internals, in one place, each behind a version check.

A workaround that overrides or calls a private member of Keras (`compat.keras`), KerasCV
(`compat.keras_cv`), TFX (`compat.tfx`) or the kfp SDK (`compat.kfp`, used by the pipeline side
only: the components never import kfp) lives in the module of that library, with a docstring
citing the upstream issue (or the file and release it copies), a `*_TESTED` constant of the
releases it was tested on, and a check that runs where the workaround is used (never at import).
Under another release the check stops with one line, `UntestedVersion`, naming the library and
version, the issue, the test to re-run and the constant to widen: a library upgrade fails loudly
where its internals matter, instead of training or pushing subtly wrong.

This module is dependency-free (it imports no TensorFlow, Keras or TFX), so the checks can be
tested with faked versions, and anything may import it.
"""

from __future__ import annotations

import importlib

# The module whose `__version__` is a library's installed release, by the name messages use.
MODULES = {"Keras": "keras", "KerasCV": "keras_cv", "TFX": "tfx", "kfp": "kfp"}


class UntestedVersion(RuntimeError):
    """A workaround of a library internal would run on a release of that library it was not tested on."""


def installed_version(library: str) -> str:
    """The installed release of `library` (a key of `MODULES`), read now: a test may fake it."""
    return importlib.import_module(MODULES[library]).__version__


def is_tested(version: str, tested: tuple[str, ...]) -> bool:
    """Whether `version` is one of the `tested` releases, given as prefixes ("3.6." is 3.6.x)."""
    return version.startswith(tested)


def untested(
    library: str, version: str, tested: tuple[str, ...], *, workaround: str, issue: str, test: str, constant: str,
    alternative: str,
) -> UntestedVersion:
    """The one-line error for `workaround` on an untested `version` of `library`."""
    releases = ", ".join(f"{library} {release}x" for release in tested)
    return UntestedVersion(
        f"{library} {version}: vocdet's {workaround} relies on a {library} internal tested on {releases} only "
        f"({issue}); re-run {test} and widen {constant}, or {alternative}"
    )


def check_tested(
    library: str, version: str | None, tested: tuple[str, ...], *, workaround: str, issue: str, test: str,
    constant: str, alternative: str,
) -> None:
    """Raises `UntestedVersion` unless `version` (default: the installed one) is one of `tested`.

    `workaround` is what vocdet overrides, `issue` the upstream issue (or copied file) it cites,
    `test` the test that proves it, `constant` the name of `tested`, and `alternative` what a
    user can do meanwhile.
    """
    version = version or installed_version(library)
    if not is_tested(version, tested):
        raise untested(
            library, version, tested, workaround=workaround, issue=issue, test=test, constant=constant,
            alternative=alternative,
        )
