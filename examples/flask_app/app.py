"""A Flask app shaped like Dify's service API, governed by sluice in-process.

Run it under Gunicorn + gevent like Dify's ``api`` workers::

    gunicorn --worker-class gevent --workers 1 --worker-connections 100 \\
        'examples.flask_app.app:create_app()'

``POST /v1/chat-messages`` applies, in order: a per-tenant request limit, a per-tenant token
budget (reserve the estimate, settle the real usage), and a per-app concurrency cap whose permit
is held for the whole stream (Dify releases it too early for streaming workflows, #35895). A 429
carries Retry-After and the RateLimit headers.
"""

from __future__ import annotations

import json
from typing import Optional

from flask import Flask, Response, jsonify, request

import sluice


def fake_model(prompt: str):
    """Stands in for the provider call: yields tokens, then the usage."""
    words = ("echo: " + prompt).split()
    for word in words:
        yield word
    return len(prompt.split()) + len(words)


def create_app(clock: Optional[sluice.Clock] = None) -> Flask:
    app = Flask(__name__)
    tenant_requests = sluice.RateLimiter(
        [sluice.Window.per_second(5, burst=10), sluice.Window.per_day(10_000)], clock=clock)
    tenant_tokens = sluice.TokenBudget([sluice.Window.per_minute(20_000)], clock=clock)
    app_streams = sluice.ConcurrencyLimiter(2, lease=1200.0, clock=clock)

    @app.errorhandler(sluice.RateLimited)
    def too_many(error: sluice.RateLimited):
        response = jsonify(code="too_many_requests", retry_after=error.retry_after)
        response.status_code = 429
        for name, value in error.headers():
            response.headers[name] = value
        return response

    @app.post("/v1/chat-messages")
    def chat_messages():
        body = request.get_json(force=True)
        tenant, app_id = body["tenant"], body["app"]
        query = body.get("query", "")
        tenant_requests.acquire(tenant)
        reservation = tenant_tokens.reserve(tenant, estimate=len(query.split()) + 512)
        permit = app_streams.acquire(app_id)
        if not body.get("stream"):
            with permit, reservation:
                tokens = list(fake_model(query))
                reservation.settle(len(query.split()) + len(tokens))
            return jsonify(answer=" ".join(tokens))

        def events():
            with permit, reservation:  # held until the stream ends or the client goes away
                count = 0
                for token in fake_model(query):
                    count += 1
                    yield f"data: {json.dumps({'answer': token})}\n\n"
                reservation.settle(len(query.split()) + count)
                yield "data: [DONE]\n\n"

        return Response(events(), mimetype="text/event-stream")

    app.extensions["sluice"] = {"requests": tenant_requests, "tokens": tenant_tokens,
                                "streams": app_streams}
    return app
