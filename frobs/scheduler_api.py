"""``/.backstage/scheduler/v1``: the scheduled tasks, and running one now.

``GET /tasks`` lists each task in Backstage's shape with its last run (start,
end, outcome, counts), as seen by whichever worker answers.  ``POST
/tasks/<id>/trigger`` (admin token) asks the worker that runs tasks to run it at
its next tick; 409 while it is running.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from .admin_auth import AdminAuth
from .scheduler import Scheduler


class SchedulerApi:
    def __init__(self, scheduler: Scheduler, auth: AdminAuth) -> None:
        self.scheduler = scheduler
        self.auth = auth

    def blueprint(self) -> Blueprint:
        blueprint = Blueprint("scheduler", __name__)
        blueprint.add_url_rule("/tasks", "tasks", self.tasks)
        blueprint.add_url_rule(
            "/tasks/<path:task_id>/trigger", "trigger", self.trigger, methods=["POST"]
        )
        return blueprint

    def tasks(self):
        return jsonify({"tasks": self.scheduler.describe()})

    def trigger(self, task_id: str):
        self.auth.require()
        self.scheduler.trigger(task_id)
        return jsonify({"taskId": task_id, "status": "triggered"}), 202
