-- The scheduler's tasks, shared by every instance: each one's last state, and
-- whether a run was asked for.
CREATE TABLE scheduler_tasks (
    task_id   text PRIMARY KEY,
    state     json,
    triggered boolean NOT NULL DEFAULT false
);
