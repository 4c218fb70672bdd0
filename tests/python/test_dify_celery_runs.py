"""sluice.dify's handover of an app slot to a streaming workflow run executed in Celery
(_celery_runs; dify-integration.md sections 1 and 6): the run keeps the slot after the client
went away and gives it back when it ends or raises, a killed worker's slot comes back with the
lease, and the request counts once while both processes hold it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading

import pytest

import sluice
import sluice.dify as dify
from sluice.dify import RateLimit, rate_limit_context
from sluice.dify import _celery_runs

import dify_support
from dify_support import FakeCeleryTask, FakeRunParams

LEASE = 60.0


@pytest.fixture
def clock():
    return sluice.ManualClock()


@pytest.fixture(autouse=True)
def backend(clock):
    name = dify_support.unique_name("celery")
    governor = sluice.Governor(dify.policy("process", name=name, ceiling=8, lease=LEASE),
                               clock=clock)
    backend = dify.AppConcurrency(governor, ceiling=8, handover=dify.handover_limiter(
        "process", name=name, lease=LEASE, clock=clock))
    dify.configure(backend)
    RateLimit._instances.clear()
    yield backend
    dify.configure(None)
    RateLimit._instances.clear()


class Broker:
    """Carries the task's payloads from the API side to the worker side, and the run's events
    back (Dify: the Celery broker and Redis pub/sub)."""

    def __init__(self):
        self.sent = []
        self.events = queue.Queue()

    def send(self, args, kwargs):
        self.sent.append((args, kwargs))


class Run:
    """A workflow run's body: publishes that it started, then waits to be told to end (or to
    raise)."""

    def __init__(self, broker):
        self.broker = broker
        self.started = threading.Event()
        self.finish = threading.Event()
        self.fail = False
        self.payloads = []

    def __call__(self, payload):
        self.payloads.append(payload)
        self.broker.events.put("workflow_started")
        self.started.set()
        assert self.finish.wait(30)
        if self.fail:
            raise RuntimeError("node failed")
        self.broker.events.put("workflow_finished")
        return None


@pytest.fixture
def celery():
    """A Dify-shaped Celery task and AppExecutionParams, patched as install() patches Dify's."""
    broker = Broker()
    run = Run(broker)
    task = FakeCeleryTask(run, broker.send)
    task.apply_async = _celery_runs.sending_apply_async(task.apply_async)
    task.run = _celery_runs.holding_run(task.run)

    class Params(FakeRunParams):
        pass
    Params.new = _celery_runs.linking_new(FakeRunParams.__dict__["new"].__func__)
    return broker, run, task, Params


def events(broker):
    while True:
        event = broker.events.get(timeout=30)
        yield event
        if event == "workflow_finished":
            return


def api_generate(rate_limit, task, params, broker):
    """Dify's AppGenerateService.generate for a streaming workflow (1.13+): enter, prepare the
    run inside rate_limit_context, send the task, relay its events."""
    request_id = rate_limit.enter(RateLimit.gen_request_key())
    with rate_limit_context(rate_limit, request_id):
        payload_json = params.new(rate_limit.client_id).model_dump_json()
    task.delay(payload_json)
    return request_id, rate_limit.generate(events(broker), request_id)


def start_worker(task, broker):
    """The Celery worker: runs the task with what the broker carried, in a thread."""
    (args, kwargs), = broker.sent[-1:]
    outcome = {}

    def work():
        try:
            outcome["result"] = task.run(*args, **kwargs)
        except BaseException as error:  # noqa: B902 - reported to the test
            outcome["error"] = error
    thread = threading.Thread(target=work)
    thread.start()
    return thread, outcome


def admitted(rate_limit, request_id):
    """Whether a new request of the app is admitted now (its slot given back at once)."""
    try:
        rate_limit.enter(request_id)
    except dify.AppInvokeQuotaExceededError:
        return False
    rate_limit.exit(request_id)
    return True


def app(tag="celery-app"):
    return dify_support.unique_name(tag)


# ---- one process: the protocol ------------------------------------------------------------------

def test_the_run_keeps_the_slot_after_the_client_went_away_and_gives_it_back_at_its_end(celery):
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    request_id, stream = api_generate(limit, task, params, broker)
    payload = json.loads(broker.sent[0][0][0])
    assert payload[_celery_runs.PAYLOAD_FIELD] == {
        "client_id": limit.client_id, "request_id": request_id, "max_active_requests": 1}

    worker, outcome = start_worker(task, broker)
    assert run.started.wait(30)
    assert next(stream) == "workflow_started"
    stream.close()                                   # the client went away mid-run
    assert not admitted(limit, "second"), "the run still holds the app's one slot"
    run.finish.set()
    worker.join(30)
    assert outcome == {"result": None}
    assert admitted(limit, "third"), "the run ended: its slot came back"
    assert _celery_runs.PAYLOAD_FIELD not in json.loads(run.payloads[0]), \
        "Dify's task reads the payload it sent, without sluice's field"


def test_in_cluster_scope_the_marks_and_slots_live_in_redis(celery, redis_server):
    broker, run, task, params = celery
    text = dify.policy("cluster", name=dify_support.unique_name("celerycluster"), ceiling=8,
                       redis_url=f"redis://127.0.0.1:{redis_server.port}/0", lease=LEASE)
    dify.configure(dify.AppConcurrency(sluice.Governor(text), ceiling=8,
                                       handover=dify._handover_of(text)))
    assert dify.backend().handover.cluster
    limit = RateLimit(app(), 1)
    _, stream = api_generate(limit, task, params, broker)
    worker, outcome = start_worker(task, broker)
    assert run.started.wait(30)
    assert next(stream) == "workflow_started"
    stream.close()
    assert not admitted(limit, "second"), "the run holds the slot, in Redis"
    run.finish.set()
    worker.join(30)
    assert outcome == {"result": None}
    assert admitted(limit, "third")


def test_a_run_that_raises_gives_its_slot_back(celery):
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    _, stream = api_generate(limit, task, params, broker)
    worker, outcome = start_worker(task, broker)
    assert run.started.wait(30)
    next(stream)
    stream.close()
    run.fail = True
    run.finish.set()
    worker.join(30)
    assert isinstance(outcome.get("error"), RuntimeError)
    assert admitted(limit, "after-failure")


def test_the_request_counts_once_while_the_api_relays_the_run(celery):
    broker, run, task, params = celery
    limit = RateLimit(app(), 2)
    _, stream = api_generate(limit, task, params, broker)
    worker, _ = start_worker(task, broker)
    assert run.started.wait(30)
    assert next(stream) == "workflow_started"        # the run took over: the API gave its back
    other = limit.enter("other")                     # so the second of two slots is free
    assert not admitted(limit, "third")
    limit.exit(other)
    run.finish.set()
    assert list(stream) == ["workflow_finished"]     # the stream ended: the API's last exit
    worker.join(30)
    assert admitted(limit, "a") and limit.active_requests() == 0


def test_before_the_run_takes_over_the_api_still_holds_the_slot(celery):
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    _, stream = api_generate(limit, task, params, broker)
    assert not admitted(limit, "second"), "sent, not started: the request's own slot counts"
    stream.close()                                   # the client went away before the run began
    assert admitted(limit, "third")
    worker, outcome = start_worker(task, broker)     # starts later, the app has room: runs
    assert run.started.wait(30)
    assert not admitted(limit, "fourth"), "the run took a slot under the cap"
    run.finish.set()
    worker.join(30)
    assert outcome == {"result": None} and admitted(limit, "fifth")


def test_a_run_whose_client_left_before_it_started_is_refused_when_the_app_is_full(celery):
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    _, stream = api_generate(limit, task, params, broker)
    stream.close()
    newcomer = limit.enter("newcomer")               # took the slot the request gave back
    worker, outcome = start_worker(task, broker)
    worker.join(30)
    assert isinstance(outcome.get("error"), dify.AppInvokeQuotaExceededError)
    assert not run.started.is_set(), "the run did not start"
    limit.exit(newcomer)
    assert admitted(limit, "after"), "the refused run holds nothing"


def test_a_redelivered_task_runs_under_the_cap_not_over_it(celery):
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    _, stream = api_generate(limit, task, params, broker)
    worker, _ = start_worker(task, broker)
    assert run.started.wait(30)
    next(stream)
    (args, kwargs), = broker.sent
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        task.run(*args, **kwargs)                    # the same run again: the app is full
    run.finish.set()
    worker.join(30)
    stream.close()
    assert admitted(limit, "after")


def test_a_task_delivered_again_after_its_run_ended_does_not_take_the_requests_place(celery):
    # The request handed its slot to the first delivery; the stream is still open when the run
    # ends and a newcomer takes the freed slot. A second delivery is a new request, not the
    # request's stand-in: over the cap it is refused.
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    _, stream = api_generate(limit, task, params, broker)
    worker, _ = start_worker(task, broker)
    assert run.started.wait(30)
    next(stream)
    run.finish.set()
    worker.join(30)
    newcomer = limit.enter("newcomer")
    (args, kwargs), = broker.sent
    with pytest.raises(dify.AppInvokeQuotaExceededError):
        task.run(*args, **kwargs)
    assert len(run.payloads) == 1
    limit.exit(newcomer)
    stream.close()


def test_a_killed_workers_slot_comes_back_with_the_lease(celery, clock):
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    _, stream = api_generate(limit, task, params, broker)
    (args, kwargs), = broker.sent
    payload, slot = _celery_runs.split_payload(args[0])
    held = dify.hold_run(**slot)
    held.__enter__()                                 # a worker that never comes back
    broker.events.put("workflow_started")
    next(stream)                                     # the API saw the run take over
    stream.close()
    assert not admitted(limit, "during")
    clock.advance(LEASE + 1)
    assert admitted(limit, "after-lease")


def test_the_run_is_linked_from_the_timer_thread_too(celery):
    # Dify sends the task on subscribe or from a 200 ms timer thread, where no request is current.
    broker, run, task, params = celery
    limit = RateLimit(app(), 1)
    request_id = limit.enter(RateLimit.gen_request_key())
    with rate_limit_context(limit, request_id):
        payload_json = params.new(limit.client_id).model_dump_json()
    timer = threading.Thread(target=task.delay, args=(payload_json,))
    timer.start()
    timer.join(30)
    assert json.loads(broker.sent[0][0][0])[_celery_runs.PAYLOAD_FIELD]["request_id"] == \
        request_id
    limit.exit(request_id)


def test_runs_not_prepared_inside_a_request_pass_through_unchanged(celery):
    broker, run, task, params = celery
    payload_json = params.new("some-app").model_dump_json()   # generate_async: no RateLimit
    task.delay(payload_json)
    task.delay("not json")
    task.apply_async(kwargs={"payload": payload_json})
    assert [sent[0][0] if sent[0] else sent[1]["payload"] for sent in broker.sent] == \
        [payload_json, "not json", payload_json]
    run.finish.set()
    assert task.run("not json") is None and run.payloads == ["not json"]


def test_an_unlimited_app_hands_nothing_over(celery):
    broker, run, task, params = celery
    limit = RateLimit(app(), 0)
    request_id, stream = api_generate(limit, task, params, broker)
    assert request_id == RateLimit._UNLIMITED_REQUEST_ID
    assert _celery_runs.PAYLOAD_FIELD not in json.loads(broker.sent[0][0][0])
    stream.close()


@pytest.mark.parametrize("client_id, request_id, cap, error, text", [
    (None, "r", 1, TypeError, "client_id must be a str"),
    ("app", None, 1, TypeError, "request_id must be a str"),
    ("app", 17, 1, TypeError, "request_id must be a str, got int"),
    ("app", "", 1, sluice.InvalidArgument, "request_id must not be empty"),
    ("app", "r" * 100_000, 1, sluice.InvalidArgument, "request_id must be at most 512"),
    ("app", "bad\udcff", 1, sluice.InvalidArgument, "request_id must be valid UTF-8"),
    ("app", "r", None, TypeError, "max_active_requests must be an int"),
    ("app", "r", -1, sluice.InvalidArgument, "max_active_requests must be an integer >= 0"),
    ("app", "r", True, TypeError, "max_active_requests must be an int"),
])
def test_hostile_arguments_name_the_argument_and_take_no_slot(client_id, request_id, cap, error,
                                                               text):
    with pytest.raises(error, match=text):
        with dify.hold_run(client_id, request_id, cap):
            pass
    assert admitted(RateLimit("app", 1), "probe")


@pytest.mark.parametrize("slot, error", [
    ("a string", sluice.InvalidArgument),
    ({"client_id": "app", "request_id": None, "max_active_requests": 1}, TypeError),
    ({"client_id": "app", "request_id": "r" * 5000, "max_active_requests": 1},
     sluice.InvalidArgument),
    ({}, TypeError),
])
def test_a_forged_payload_field_is_refused_by_name_and_the_run_does_not_start(celery, slot,
                                                                               error):
    broker, run, task, params = celery
    payload = json.dumps({"app_id": "app", "workflow_run_id": "w",
                          _celery_runs.PAYLOAD_FIELD: slot})
    with pytest.raises(error, match="sluice.dify.hold_run"):
        task.run(payload)
    assert run.payloads == []


class RecordingGovernor:
    """A Governor-shaped fake that records, for each admit, the app's cap in effect (None: the
    rule's ceiling) and whether the over-cap admission it holds up had finished."""

    rule_names = [dify.RULE]

    def __init__(self):
        self.caps, self.seen = {}, []
        self.over_started, self.over_may_end = threading.Event(), threading.Event()

    def set_key_limits(self, rule, key, *, concurrency):
        self.caps[key] = concurrency

    def clear_key_limits(self, rule, key):
        self.caps.pop(key, None)

    def admit(self, attributes):
        cap = self.caps.get(attributes["app"])
        self.seen.append((cap, self.over_may_end.is_set()))
        if cap is None:                               # the over-cap admission: held up
            self.over_started.set()
            assert self.over_may_end.wait(30)

        class Admitted:
            rule = dify.RULE

            def __bool__(self):
                return True

            def release(self):
                pass
        return Admitted()


def test_an_admit_never_runs_while_its_process_has_lifted_the_cap_to_the_ceiling():
    # admit_over lifts the app's cap for one admit; an admit of the app's cap meanwhile would be
    # judged against the ceiling. It waits for the lift to end instead.
    governor = RecordingGovernor()
    concurrency = dify.AppConcurrency(governor, ceiling=8)
    concurrency.admit("a", 1)
    over = threading.Thread(target=concurrency.admit_over, args=("a",))
    over.start()
    assert governor.over_started.wait(30)
    normal = threading.Thread(target=concurrency.admit, args=("a", 1))
    normal.start()
    normal.join(0.2)                                  # give it the chance to go wrong
    governor.over_may_end.set()
    over.join(30)
    normal.join(30)
    assert governor.seen == [(1, False), (None, False), (1, True)]
    assert governor.caps == {"a": 1}, "the app's cap is back after the lift"


# ---- install ------------------------------------------------------------------------------------

@pytest.fixture
def fake_dify(tmp_path):
    with dify_support.fake_dify_tree(tmp_path) as make:
        yield make


def test_install_hooks_the_celery_task_and_uninstall_puts_it_back(fake_dify):
    fake_dify(celery_task=True)
    import tasks.app_generate.workflow_execute_task as module
    task, params = module.workflow_based_app_execution_task, module.AppExecutionParams
    run, new = task.run, params.__dict__.get("new")   # inherited: None
    name = dify_support.unique_name("celeryinstall")
    try:
        dify.install(dify.policy("host", name=name, ceiling=4, max_apps=16),
                     attempt_scope="process")
        assert task.run.__wrapped__ is run
        assert task.apply_async.__wrapped__ is not None
        limit = dify.RateLimit("installed-app", 1)
        request_id = limit.enter()
        with dify.rate_limit_context(limit, request_id):
            payload_json = params.new("installed-app").model_dump_json()
        task.delay(payload_json)
        sent = json.loads(module.SENT[0][0][0])
        assert sent[_celery_runs.PAYLOAD_FIELD]["request_id"] == request_id
        task.run(module.SENT[0][0][0])
        assert _celery_runs.PAYLOAD_FIELD not in json.loads(module.RAN[0])
        limit.exit(request_id)
    finally:
        dify.uninstall()
        dify_support.remove_regions(name)
    assert task.run is run and params.__dict__.get("new") is new
    assert params.new.__func__ is FakeRunParams.__dict__["new"].__func__


def test_a_dify_without_the_run_parameters_is_refused_by_name(fake_dify):
    fake_dify(celery_task=True, version="1.13.9",
              omit=["tasks.app_generate.workflow_execute_task.AppExecutionParams"])
    name = dify_support.unique_name("celerymissing")
    try:
        with pytest.raises(dify.DifyNotSupported,
                           match=r"Dify 1\.13\.9 .*workflow_execute_task\.AppExecutionParams"):
            dify.install(dify.policy("host", name=name, ceiling=4, max_apps=16))
        assert not dify.installed()
        assert dify.install(dify.policy("host", name=name, ceiling=4, max_apps=16),
                            celery_runs=False) == "1.13.9"
    finally:
        dify.uninstall()
        dify_support.remove_regions(name)


def test_celery_runs_needs_marks_shared_with_the_workers(fake_dify):
    fake_dify(celery_task=True)
    policy = dify.policy("process", name=dify_support.unique_name("celeryprocess"))
    with pytest.raises(ValueError, match="celery_runs=True needs handover marks"):
        dify.install(policy, celery_runs=True)
    with pytest.raises(TypeError, match="celery_runs must be None, a bool or"):
        dify.install(policy, celery_runs="yes")
    assert not dify.installed()
    dify.install(policy, attempt_scope="process")   # None: process scope has nothing to share
    import tasks.app_generate.workflow_execute_task as module
    assert not hasattr(module.workflow_based_app_execution_task.run, "__wrapped__")


def test_an_older_dify_without_the_task_installs_without_it_unless_asked(fake_dify):
    fake_dify(version="1.12.0")
    name = dify_support.unique_name("celeryolder")
    try:
        with pytest.raises(dify.DifyNotSupported, match=r"Dify 1\.12\.0 .*no module "
                                                        r"tasks\.app_generate"):
            dify.install(dify.policy("host", name=name, ceiling=4, max_apps=16),
                         attempt_scope="process", celery_runs=True)
        dify.install(dify.policy("host", name=name, ceiling=4, max_apps=16),
                     attempt_scope="process")
        assert dify.installed()
    finally:
        dify.uninstall()
        dify_support.remove_regions(name)


# ---- processes: host scope, a forked worker -----------------------------------------------------

WORKER = textwrap.dedent("""
    import json, os, signal, sys, time
    import sluice, sluice.dify as dify
    from sluice.dify import RateLimit, rate_limit_context, _celery_runs
    sys.path.insert(0, sys.argv[3])
    from dify_support import FakeCeleryTask, FakeRunParams

    NAME, CASE, LEASE = sys.argv[1], sys.argv[2], float(sys.argv[4])

    def configure():
        policy = dify.policy("host", name=NAME, ceiling=4, max_apps=16, lease=LEASE)
        dify.configure(dify.AppConcurrency(sluice.Governor(policy), ceiling=4,
                                           handover=dify.handover_limiter("host", name=NAME,
                                                                          lease=LEASE)))
        RateLimit._instances.clear()

    def admitted(limit, request_id):
        try:
            limit.enter(request_id)
        except dify.AppInvokeQuotaExceededError:
            return False
        limit.exit(request_id)
        return True

    configure()
    to_worker_r, to_worker_w = os.pipe()
    events_r, events_w = os.pipe()
    sent = []
    task = FakeCeleryTask(None, lambda args, kwargs: sent.append(args[0]))
    task.apply_async = _celery_runs.sending_apply_async(task.apply_async)

    class Params(FakeRunParams):
        pass
    Params.new = _celery_runs.linking_new(FakeRunParams.__dict__["new"].__func__)

    cap = 2 if CASE == "once" else 1
    limit = RateLimit("forked-app", cap)
    request_id = limit.enter(RateLimit.gen_request_key())
    with rate_limit_context(limit, request_id):
        payload_json = Params.new("forked-app").model_dump_json()
    task.delay(payload_json)

    pid = os.fork()
    if pid == 0:                                     # the Celery worker
        code = 0
        try:
            configure()                              # its own install, as worker_process_init
            def body(payload):
                os.write(events_w, b"S")             # workflow_started, over pub/sub
                order = os.read(to_worker_r, 1)      # wait to be told how the run ends
                if order == b"F":
                    raise RuntimeError("node failed")
            worker_task = FakeCeleryTask(body, None)
            worker_task.run = _celery_runs.holding_run(worker_task.run)
            try:
                worker_task.run(sent[0])
            except RuntimeError:
                pass
        except BaseException:
            import traceback; traceback.print_exc()
            code = 3
        os._exit(code)

    def stream():
        while True:
            event = os.read(events_r, 1)
            if not event:
                return
            yield event

    relayed = limit.generate(stream(), request_id)
    assert next(relayed) == b"S"
    report = []
    if CASE == "once":
        other = limit.enter("other")                 # the request counts once: one slot free
        report.append(("third", admitted(limit, "third")))
        limit.exit(other)
    relayed.close()                                  # the client went away
    report.append(("after-close", admitted(limit, "after-close")))
    if CASE == "kill":
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        deadline = time.monotonic() + 30 * LEASE
        while not admitted(limit, "after-kill") and time.monotonic() < deadline:
            time.sleep(LEASE / 10)
        report.append(("after-kill", admitted(limit, "after-kill")))
    else:
        os.write(to_worker_w, b"F" if CASE == "raise" else b"E")
        _, status = os.waitpid(pid, 0)
        report.append(("worker", os.waitstatus_to_exitcode(status)))
        report.append(("after-run", admitted(limit, "after-run")))
    print("REPORT", report)
""")


def run_worker_case(tmp_path, case, lease=60.0):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    name = dify_support.unique_name("celeryfork")
    support = os.path.dirname(os.path.abspath(dify_support.__file__))
    try:
        result = subprocess.run([sys.executable, str(script), name, case, support, str(lease)],
                                capture_output=True, text=True, timeout=120)
    finally:
        dify_support.remove_regions(name)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_forked_worker_keeps_the_slot_after_the_client_went_away_until_the_run_ends(tmp_path):
    out = run_worker_case(tmp_path, "end")
    assert "REPORT [('after-close', False), ('worker', 0), ('after-run', True)]" in out, out


def test_a_forked_workers_run_that_raises_gives_the_slot_back(tmp_path):
    out = run_worker_case(tmp_path, "raise")
    assert "REPORT [('after-close', False), ('worker', 0), ('after-run', True)]" in out, out


def test_a_request_held_by_the_api_and_its_worker_counts_once(tmp_path):
    out = run_worker_case(tmp_path, "once")
    assert "REPORT [('third', False), ('after-close', True), ('worker', 0), " \
           "('after-run', True)]" in out, out


def test_a_sigkilled_workers_slot_comes_back_after_the_lease(tmp_path):
    out = run_worker_case(tmp_path, "kill", lease=2.0)
    assert "REPORT [('after-close', False), ('after-kill', True)]" in out, out
