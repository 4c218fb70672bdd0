"""sluice.dify's handover of an app slot to a streaming workflow run, with a real Celery: a
Dify-shaped package (a ``FlaskTask`` whose ``__call__`` calls ``self.run`` inside an app context,
as Dify's api/extensions/ext_celery.py builds it; ``workflow_based_app_execution_task`` a
``shared_task`` in tasks/app_generate/workflow_execute_task.py), a redis-server as broker, a
worker started with ``celery worker`` in a subprocess, and the API side in this process.

The worker installs sluice.dify with ``install_in_celery_worker`` where it loads its app (Dify's
celery_entrypoint.py); the API side with ``install`` (both host scope, one region). What is
proved: ``install`` patches the task instance Celery's registry holds (through the shared
task's proxy), ``delay`` sends the request along, and the worker's run keeps the app's slot
after the API side's stream is closed, gives it back at its end, and a SIGKILLed worker's slot
comes back with the lease.

The fake package and its Celery app are imported once for the module: Celery keeps every
``shared_task`` it has seen for the apps made later, so a second import would register the
first one's task again.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

pytest.importorskip("celery", reason="celery is not installed (requirements-dev.txt)")

import redis  # noqa: E402

import sluice.dify as dify  # noqa: E402
from sluice.dify import _celery_runs  # noqa: E402

import dify_support  # noqa: E402
from local_redis import LocalRedis  # noqa: E402

QUEUE = "workflow_based_app_execution"
WAIT = 30.0  # seconds: the bound of every wait for the worker

# Dify's api/extensions/ext_celery.py in shape (init_app): the task class's __call__ runs the
# task's `run` inside the Flask app's context. The worker's branch is Dify's
# celery_entrypoint.py with sluice's hook.
CELERY_APP = '''
import os

import flask
from celery import Celery, Task

flask_app = flask.Flask("fake-dify")


class FlaskTask(Task):
    def __call__(self, *args, **kwargs):
        with flask_app.app_context():
            return self.run(*args, **kwargs)


celery = Celery("fake-dify", task_cls=FlaskTask, broker=os.environ["FAKE_DIFY_REDIS"],
                backend=os.environ["FAKE_DIFY_REDIS"])
celery.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                   worker_hijack_root_logger=False,
                   imports=["tasks.app_generate.workflow_execute_task"])
celery.set_default()

import tasks.app_generate.workflow_execute_task  # noqa: E402,F401

if os.environ.get("FAKE_DIFY_WORKER"):
    import sluice.dify
    sluice.dify.install_in_celery_worker(
        sluice.dify.policy("host", name=os.environ["FAKE_DIFY_NAME"], ceiling=4, max_apps=16,
                           lease=float(os.environ["FAKE_DIFY_LEASE"])),
        attempt_scope="process", celery_runs=True)
'''

# Dify's tasks/app_generate/workflow_execute_task.py in shape: AppExecutionParams.new makes the
# run's parameters (a fresh workflow_run_id), the task reads its JSON payload. The run's body
# publishes its events to the API side (Dify: Redis pub/sub; here a list per run) and waits to
# be told how to end.
WORKFLOW_TASK = '''
import json
import os
import uuid

import redis
from celery import shared_task

_redis = redis.Redis.from_url(os.environ["FAKE_DIFY_REDIS"])


class AppExecutionParams:
    def __init__(self, app_id, workflow_run_id):
        self.app_id = app_id
        self.workflow_run_id = workflow_run_id

    @classmethod
    def new(cls, app_id, workflow_run_id=None):
        return cls(app_id, workflow_run_id or str(uuid.uuid4()))

    def model_dump_json(self):
        return json.dumps({"app_id": self.app_id, "workflow_run_id": self.workflow_run_id,
                           "streaming": True})


@shared_task(queue="workflow_based_app_execution")
def workflow_based_app_execution_task(payload):
    run_id = json.loads(payload)["workflow_run_id"]
    _redis.rpush(f"seen:{run_id}", payload)
    _redis.rpush(f"events:{run_id}", "workflow_started")
    order = _redis.blpop([f"orders:{run_id}"], timeout=60)
    if order is None or order[1] == b"fail":
        raise RuntimeError("node failed")
    _redis.rpush(f"events:{run_id}", "workflow_finished")
'''


@pytest.fixture(scope="module")
def fake_dify(tmp_path_factory):
    """(the fake Dify's root, a client of its broker's redis-server, the broker's URL)."""
    root = tmp_path_factory.mktemp("fake-dify-celery")
    dify_support.write_fake_dify(str(root))
    for relative, text in {"celery_app.py": CELERY_APP,
                           "tasks/__init__.py": "",
                           "tasks/app_generate/__init__.py": "",
                           "tasks/app_generate/workflow_execute_task.py": WORKFLOW_TASK}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    with LocalRedis() as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        previous = os.environ.get("FAKE_DIFY_REDIS")
        os.environ["FAKE_DIFY_REDIS"] = url
        sys.path.insert(0, str(root))
        try:
            importlib.import_module("celery_app")  # the API process's Celery app, as Dify's
            yield root, redis.Redis(port=server.port), url
        finally:
            sys.path.remove(str(root))
            dify_support.forget_fake_dify()
            sys.modules.pop("celery_app", None)
            if previous is None:
                os.environ.pop("FAKE_DIFY_REDIS", None)
            else:
                os.environ["FAKE_DIFY_REDIS"] = previous


@pytest.fixture
def api(fake_dify, region, request):
    """The API side: sluice.dify installed in host scope (policy `region`; lease: the test's
    indirect parameter, 60 s by default) in this process."""
    lease = getattr(request, "param", 60.0)
    dify.install(dify.policy("host", name=region, ceiling=4, max_apps=16, lease=lease),
                 attempt_scope="process", celery_runs=True)
    try:
        yield region, lease
    finally:
        dify.uninstall()
        dify.configure(None)
        dify.RateLimit._instances.clear()
        dify_support.remove_regions(region)


@pytest.fixture
def workers(fake_dify, tmp_path):
    """Starts Celery workers (`start(name, lease, pool)`) and kills what is left of them."""
    root, _, url = fake_dify
    started = []

    def start(name, lease, pool="gevent"):
        log = open(tmp_path / f"worker-{len(started)}.log", "w")
        env = dict(os.environ, FAKE_DIFY_REDIS=url, FAKE_DIFY_WORKER="1", FAKE_DIFY_NAME=name,
                   FAKE_DIFY_LEASE=str(lease),
                   PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker", f"--pool={pool}",
             "--concurrency=1", "-Q", QUEUE, "--without-heartbeat", "--without-gossip",
             "--without-mingle", "--loglevel=WARNING", "-n", f"fake-dify-{uuid.uuid4().hex}@%h"],
            cwd=str(root), env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(WAIT)
        log.close()


def worker_logs(tmp_path):
    return "\n".join(path.read_text() for path in sorted(tmp_path.glob("worker-*.log")))


def events(client, run_id):
    """The run's events as the API side relays them (Dify: Redis pub/sub to the SSE stream)."""
    while True:
        got = client.blpop([f"events:{run_id}"], timeout=int(WAIT))
        assert got is not None, f"no event of run {run_id} within {WAIT} s"
        event = got[1].decode()
        yield event
        if event == "workflow_finished":
            return


def api_generate(client, limit):
    """Dify's AppGenerateService.generate for a streaming workflow (1.13+): enter, prepare the
    run inside rate_limit_context, send the task with `delay`, relay its events."""
    from core.app.features.rate_limiting.rate_limit import rate_limit_context
    from tasks.app_generate.workflow_execute_task import (AppExecutionParams,
                                                          workflow_based_app_execution_task)
    request_id = limit.enter(limit.gen_request_key())
    with rate_limit_context(limit, request_id):
        params = AppExecutionParams.new(limit.client_id)
    workflow_based_app_execution_task.delay(params.model_dump_json())
    run_id = params.workflow_run_id
    return run_id, limit.generate(events(client, run_id), request_id)


def refused(limit, request_id):
    """Whether a new request of the app is refused now (Dify's AppInvokeQuotaExceededError);
    an admitted one gives its slot back at once."""
    from core.errors.error import AppInvokeQuotaExceededError
    try:
        limit.enter(request_id)
    except AppInvokeQuotaExceededError:
        return True
    limit.exit(request_id)
    return False


def eventually_admitted(limit, request_id, bound):
    """Polls (bounded by `bound` seconds) until a new request of the app is admitted."""
    deadline = time.monotonic() + bound
    while refused(limit, request_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def rate_limit(app_id, cap):
    from core.app.features.rate_limiting.rate_limit import RateLimit
    assert RateLimit is dify.RateLimit, "install() patched the fake Dify's RateLimit"
    return RateLimit(app_id, cap)


@pytest.mark.parametrize("pool", ["gevent", "prefork", "solo"])
def test_a_run_keeps_the_slot_after_the_stream_closed_and_gives_it_back_at_its_end(
        api, fake_dify, workers, tmp_path, pool):
    # gevent: Dify's default pool, which sends no worker_process_init; prefork: installed in
    # the child after Celery built the task's tracer, which works because the task class's
    # __call__ looks self.run up at each call (Dify's FlaskTask); solo: worker_init and then
    # worker_process_init in one process, installed once.
    name, lease = api
    _, client, _ = fake_dify
    workers(name, lease, pool)
    limit = rate_limit(f"real-{pool}-{uuid.uuid4().hex[:8]}", 1)
    run_id, stream = api_generate(client, limit)
    assert next(stream) == "workflow_started", worker_logs(tmp_path)
    seen = json.loads(client.lindex(f"seen:{run_id}", 0))
    assert _celery_runs.PAYLOAD_FIELD not in seen, "the worker took sluice's field out"
    stream.close()                                   # the client went away mid-run
    assert refused(limit, "while-running"), "the run in the worker still holds the one slot"

    client.rpush(f"orders:{run_id}", "end")
    assert client.blpop([f"events:{run_id}"], timeout=int(WAIT)) == \
        (f"events:{run_id}".encode(), b"workflow_finished"), worker_logs(tmp_path)
    assert eventually_admitted(limit, "after-run", WAIT), \
        "the run ended: its slot came back\n" + worker_logs(tmp_path)


def test_the_cap_holds_while_a_run_holds_the_slot(api, fake_dify, workers, tmp_path):
    name, lease = api
    _, client, _ = fake_dify
    workers(name, lease)
    limit = rate_limit(f"real-cap-{uuid.uuid4().hex[:8]}", 1)
    run_id, stream = api_generate(client, limit)
    assert next(stream) == "workflow_started", worker_logs(tmp_path)
    from core.errors.error import AppInvokeQuotaExceededError
    with pytest.raises(AppInvokeQuotaExceededError):
        api_generate(client, limit)                  # a second request while the run holds it
    stream.close()
    with pytest.raises(AppInvokeQuotaExceededError):
        api_generate(client, limit)                  # and after its client went away
    client.rpush(f"orders:{run_id}", "fail")         # the run raises: its slot comes back too
    assert eventually_admitted(limit, "after-failure", WAIT), worker_logs(tmp_path)


@pytest.mark.parametrize("api", [5.0], indirect=True, ids=["lease-5s"])
def test_a_sigkilled_worker_gives_its_slot_back_after_the_lease(api, fake_dify, workers,
                                                               tmp_path):
    name, lease = api
    _, client, _ = fake_dify
    worker = workers(name, lease)
    limit = rate_limit(f"real-kill-{uuid.uuid4().hex[:8]}", 1)
    run_id, stream = api_generate(client, limit)
    assert next(stream) == "workflow_started", worker_logs(tmp_path)
    stream.close()
    assert refused(limit, "while-running"), "the run in the worker holds the one slot"
    os.killpg(worker.pid, signal.SIGKILL)            # gevent: the run is in the worker itself
    assert worker.wait(WAIT) == -signal.SIGKILL
    assert eventually_admitted(limit, "after-kill", lease + WAIT), \
        "the killed run's slot came back with the lease"


EARLY_INSTALL = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import sluice.dify as dify
    from sluice.dify import _celery_runs
    # The top of Dify's create_app, or a Gunicorn post_fork hook (Dify's workers load the app
    # after it): no Celery app made yet.
    dify.install(dify.policy("host", name=sys.argv[2], ceiling=4, max_apps=16),
                 attempt_scope="process", celery_runs=True)
    import celery_app  # noqa: F401  (ext_celery.init_app: Dify's Celery app, its task)
    from celery.signals import before_task_publish
    from core.app.features.rate_limiting.rate_limit import RateLimit, rate_limit_context
    from tasks.app_generate.workflow_execute_task import (AppExecutionParams,
                                                          workflow_based_app_execution_task)
    task = workflow_based_app_execution_task

    def patched():
        return [hasattr(task.run, "__wrapped__"), hasattr(task.apply_async, "__wrapped__"),
                hasattr(AppExecutionParams.new, "__wrapped__")]

    sent = []
    before_task_publish.connect(lambda body=None, **_: sent.append(body[0][0]), weak=False)
    limit = RateLimit("early-app", 1)
    request_id = limit.enter(limit.gen_request_key())
    with rate_limit_context(limit, request_id):
        params = AppExecutionParams.new("early-app")
    task.delay(params.model_dump_json())             # Dify's app finalized: its task patched
    limit.exit(request_id)
    print("PATCHED", patched())
    print("SENT", json.loads(sent[0]).get(_celery_runs.PAYLOAD_FIELD, {}).get("request_id")
          == request_id)
    dify.uninstall()
    print("UNINSTALLED", patched())
    dify.install(dify.policy("host", name=sys.argv[2], ceiling=4, max_apps=16),
                 attempt_scope="process", celery_runs=True)  # after create_app: at once
    print("AGAIN", patched())
    dify.uninstall()
""")


def test_install_before_difys_celery_app_is_made_patches_the_task_of_difys_app(
        fake_dify, region, tmp_path):
    # Old code: the shared task's proxy, resolved with no Celery app made, made Celery's
    # fallback app and install() patched that app's copy of the task; Dify's app, made next,
    # sent its own copy, unpatched: no request went along with the run, and no run held its
    # slot (SENT False).
    root, _, url = fake_dify
    script = tmp_path / "early_install.py"
    script.write_text(EARLY_INSTALL)
    try:
        result = subprocess.run([sys.executable, str(script), str(root), region],
                                env=dict(os.environ, FAKE_DIFY_REDIS=url[:-1] + "1"),
                                capture_output=True, text=True, timeout=WAIT)
    finally:
        dify_support.remove_regions(region)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "PATCHED [True, True, True]", "SENT True", "UNINSTALLED [False, False, False]",
        "AGAIN [True, True, True]"], result.stdout + result.stderr
