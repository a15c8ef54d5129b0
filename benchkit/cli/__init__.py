"""Command line: thin commands over the library.

Exit codes: 0 success (for ``run``: every cell VALID); 1 a run finished but
some cell is INVALID or failed (``verify``: a record not VERIFIED;
``check-bundle``: a rule failed); 2 bad input (spec, record, option, model)
or a file that cannot be written (disk full: nothing partial is left),
reported as one message naming the file and field, never a traceback;
130 interrupted (records already written are kept).

Start-up imports nothing heavy: pydantic, numpy and every runtime are
imported inside the command that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

import sys

from benchkit.cli.parser import _parser
from benchkit.cli.results import cmd_compare, cmd_export, cmd_report, cmd_results, cmd_show
from benchkit.cli.run import (
    cmd_backends,
    cmd_check_adapter,
    cmd_fleet,
    cmd_run,
    cmd_schema,
    cmd_validate,
    cmd_workloads,
)
from benchkit.cli.trust import cmd_bundle, cmd_check_bundle, cmd_keygen, cmd_sign, cmd_verify
from benchkit.errors import BenchkitError

_COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "schema": cmd_schema,
    "backends": cmd_backends,
    "workloads": cmd_workloads,
    "fleet": cmd_fleet,
    "show": cmd_show,
    "compare": cmd_compare,
    "results": cmd_results,
    "export": cmd_export,
    "keygen": cmd_keygen,
    "sign": cmd_sign,
    "verify": cmd_verify,
    "bundle": cmd_bundle,
    "check-bundle": cmd_check_bundle,
    "report": cmd_report,
    "check-adapter": cmd_check_adapter,
}


def _one_line_record_warnings() -> None:
    """A record from a newer benchkit (benchkit.results.records.RecordWarning) is said in one line, not as Python's
    file:line warning. Matched by name: importing the records module here would cost every command's start-up."""
    import warnings

    if getattr(warnings.formatwarning, "benchkit", False):
        return
    plain = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if category.__name__ == "RecordWarning":
            return f"benchkit: warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    fmt.benchkit = True
    warnings.formatwarning = fmt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _one_line_record_warnings()
    try:
        return _COMMANDS[args.command](args)
    except BenchkitError as e:
        print(f"benchkit: error: {e}", file=sys.stderr)
        return 2
    except RecursionError:
        # Readers bound the nesting of what they parse (benchkit._fsutil.loads_json); this is the last guard, so
        # that no input, however deep, ends in a traceback.
        print("benchkit: error: an input is nested too deeply to read (JSON or YAML nesting of thousands of "
              "levels); no result was changed", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchkit: interrupted; records already written are kept", file=sys.stderr)
        return 130
