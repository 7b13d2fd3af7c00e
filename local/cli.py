"""The command line of the recipe's modules: options in, ``run(**options)`` out.

Every ``python -m`` entry point of ``local/`` and ``data_prep/`` is a
``main = command(run, __doc__, option(...), ...)``, so that parsing lives in
one place and each module states only its options and what it runs.
"""

import argparse
import sys


def describe_on_help(argv, description):
    """Print a script's ``description`` when ``argv`` asks for ``--help``.

    For the scripts whose command line is SpeechBrain's (``sb.parse_arguments``),
    whose ``--help`` lists its run options only: the script's own settings
    (the model file, ``--condition``, overrides) come first.

    Arguments
    ---------
    argv : list of str or None
        The command line (None: ``sys.argv[1:]``).
    description : str
        The script's docstring.

    Example
    -------
    >>> describe_on_help(["hparams/dann_fbank.yaml", "--help"], "Trains.")
    Trains.
    >>> describe_on_help(["hparams/dann_fbank.yaml"], "Trains.")
    """
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        print(description)


class UsageError(Exception):
    """Options that do not go together: ``main`` prints the usage and the message, and exits 2."""


def option(*flags, **settings):
    """One command-line option, as ``argparse.ArgumentParser.add_argument`` takes it.

    Arguments
    ---------
    *flags : str
        The option's names (``"--seed"``) or a positional argument's name.
    **settings
        ``add_argument``'s keyword arguments (``type``, ``default``, ``help``...).

    Returns
    -------
    tuple
        ``(flags, settings)``.
    """
    return flags, settings


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` that ends an option's help with its default, as it is typed on the command line.

    Not for ``--help``, an option without a default (None), a flag's False, or a help
    that names its default itself (``hparams/common.yaml``'s value, a folder
    of the run's). argparse's ``ArgumentDefaultsHelpFormatter`` would print
    ``(default: None)`` for the first and a list's Python form.
    """

    def _get_help_string(self, action):
        default = action.default
        # By identity: a default of 0 is told, False (== 0) is not.
        if any(default is unshown for unshown in (None, False, argparse.SUPPRESS)) \
                or "default" in (action.help or ""):
            return action.help
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{action.help} (default: {str(default).replace('%', '%%')})"


def command(run, description, *options):
    """A ``main(argv=None)`` that parses ``options`` and returns ``run(**parsed)``.

    Arguments
    ---------
    run : callable
        Takes the parsed options as keyword arguments (named as their
        ``dest``) and returns the exit status; raises :class:`UsageError`
        for options that do not go together, as ``parser.error`` would.
    description : str
        The ``--help`` description; of a docstring, its first paragraph.
    *options : tuple
        The options, as :func:`option` returns them.

    Returns
    -------
    callable
        ``main(argv=None)``, parsing ``argv`` (default ``sys.argv[1:]``) with
        its ``main.parser``.

    Example
    -------
    >>> main = command(lambda seed: seed * 2, "Doubles.", option("--seed", type=int))
    >>> main(["--seed", "3"])
    6
    """
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    for flags, settings in options:
        parser.add_argument(*flags, **settings)

    def main(argv=None):
        arguments = parser.parse_args(argv)
        try:
            return run(**vars(arguments))
        except UsageError as err:
            parser.error(str(err))

    main.parser = parser
    return main
