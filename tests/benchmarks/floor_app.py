"""The floor of the ingest throughput: a bare Flask app under the same gunicorn.

It does the least an ingress can: parse the JSON body and answer 202, on the
same path as the service's ingress.  The benchmarks run it with the service's
``gunicorn.conf.py`` (same worker class, threads and worker count) and load it
exactly as they load the service, so the ratio of the two says what the
service's own work costs.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/api/events/http/<topic>")
def receive(topic: str):
    request.get_json(force=True)
    return jsonify({"status": "accepted"}), 202
