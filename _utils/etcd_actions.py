"""The one shape of what an action returns (issue 17): ``result`` (True done or nothing to
do, False refused or failed), ``comment`` (what happened, or why not, and the fix),
``changes`` (what it changed; empty when nothing), beside the action's own facts. A
refusal also sets the job's retcode, so `salt`, scripts and an orchestration's
``salt.function`` stop on it."""


def outcome(context, result, comment, changes=None, **facts):
    """The return of an action; `context` is the caller's ``__context__``."""
    if result is False:
        context["retcode"] = 1
    return dict(facts, result=result, comment=comment, changes=changes or {})
