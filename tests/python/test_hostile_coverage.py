"""The hostile-input suite stays complete, and its runner can fail (issue 13).

* Every public callable of ``sluice.__all__`` (functions, constructors, methods, the context
  manager protocol) has hostile cases, and every parameter the running module reports has a
  kind of hostile value in test_hostile_api.SPECS. A new public function, method or keyword
  without hostile cases fails here, naming it.
* The runner attributes a crash, a hang, a crash while collecting and an undocumented exception
  to the case that caused it: it is checked on cases made to do exactly that.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import hostile_support as hs

import test_hostile_api
import test_hostile_async_gevent  # noqa: F401 - their cases count as coverage
import test_hostile_fork  # noqa: F401
import test_hostile_lifetimes  # noqa: F401


def test_every_public_callable_has_hostile_cases():
    api = hs.public_api()
    covered = hs.covered_names()
    missing = sorted(name for name in api if name not in covered)
    assert not missing, f"public callables without hostile cases (add them to SPECS): {missing}"
    stale = sorted(s.name for s in test_hostile_api.SPECS if s.name not in api)
    assert not stale, f"SPECS entries that are no longer public: {stale}"


def test_every_parameter_has_hostile_values():
    api = hs.public_api()
    problems = []
    for s in test_hostile_api.SPECS:
        params = api.get(s.name)
        if params is None:
            problems.append(f"{s.name}: its parameters cannot be read")
            continue
        names = {p.name for p in params if not p.name.startswith("*")}
        if names - set(s.kinds):
            problems.append(f"{s.name}: no hostile values for {sorted(names - set(s.kinds))}")
        if set(s.kinds) - names:
            problems.append(f"{s.name}: SPECS lists parameters it does not have: "
                            f"{sorted(set(s.kinds) - names)}")
    assert not problems, "\n".join(problems)


def test_every_context_manager_is_exited_twice():
    api = hs.public_api()
    exits = sorted(name for name in api if name.endswith(".__exit__"))
    assert exits, "no context managers found: the API reader is broken"
    covered = hs.covered_names()
    assert all(name in covered for name in exits), [n for n in exits if n not in covered]


def test_case_ids_are_unique_and_stable():
    seen = {}
    for module, suite in hs.SUITES.items():
        for case_id in suite.ids():
            assert "\n" not in case_id
            seen.setdefault(case_id, module)
    # Registration is deterministic: building the table again yields the same ids.
    assert test_hostile_api.SUITE.ids() == list(test_hostile_api.SUITE.cases)


# ---- the runner itself ----------------------------------------------------------------------------

def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _idle_forever():
    time.sleep(3600)


def _busy_then_done():
    deadline = time.monotonic() + 4.5  # longer than IDLE_AFTER, but working all along
    while time.monotonic() < deadline:
        pass


class _CrashOnCollect:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGSEGV)


def _crash_while_collecting():
    obj = _CrashOnCollect()
    obj.self = obj  # only the collector frees it: after the verdict
    return None


def _plain_value_error():
    raise ValueError("not documented")


def _forked_child_crashes():
    hs.expect_forked(_segfault, 10)


@pytest.mark.parametrize("fn, expect, passed, detail", [
    (_segfault, hs.DOC, False, "crashed: SIGSEGV"),
    (_idle_forever, hs.DOC, False, "hung: no result"),
    (_busy_then_done, hs.DOC, True, "returned"),
    (_crash_while_collecting, hs.DOC, False, "crashed after the call, while collecting"),
    (_plain_value_error, hs.DOC, False, "raised builtins.ValueError"),
    (lambda: None, hs.raises(TypeError), False, "returned normally"),
    (lambda: int("x"), hs.raises(ValueError), True, "raised builtins.ValueError"),
    (_forked_child_crashes, hs.RETURNS, False, "in a fork()ed child: crashed"),
])
def test_the_runner_attributes_each_outcome_to_its_case(fn, expect, passed, detail):
    result = hs._run_one(hs.Case("selfcheck", fn, expect, timeout=30.0))
    assert result["passed"] is passed, result
    assert detail in result["detail"], result
