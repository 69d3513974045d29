"""``deltabench study``: the paper's user study (its Figure 6) as a kit.

- :mod:`deltabench.study.make`: a self-contained static page of randomised two-alternative
  pairs built from a run's saved edits, and its ``study.json`` manifest.
- :mod:`deltabench.study.schedule`: the per-participant randomisation, the same in Python and in
  the page's JavaScript, so an analysis can check what a page recorded.
- :mod:`deltabench.study.serve`: an optional local server that collects responses.
- :mod:`deltabench.study.analyze`: preference rates with participant-bootstrap intervals,
  Bradley–Terry ranking, attention-check exclusions, rater agreement, figure, tables and a page.
"""

from __future__ import annotations

FORMAT = "deltabench-study/1"
RESPONSES_FORMAT = "deltabench-study-responses/1"
QUESTIONS = {
    "accuracy": "Which edit shows the text better?",
    "realism": "Which image looks more real?",
}
QUESTION_TITLES = {"accuracy": "Manipulation accuracy", "realism": "Visual realism"}


def add_parser(subparsers) -> None:
    """Register ``deltabench study make|serve|analyze`` on the CLI's subparsers."""
    from deltabench.study.cli import add_parser as _add

    _add(subparsers)
