"""Tasks: specs from YAML/Python/plug-ins, and the labelled examples they describe."""

from bench.tasks.examples import Example, TaskData, example_uid
from bench.tasks.loading import build_task_data, load_task_data
from bench.tasks.registry import (
    RegisteredTask,
    discover_tasks,
    get_task,
    load_task_file,
    register_task,
)

__all__ = [
    "Example",
    "RegisteredTask",
    "TaskData",
    "build_task_data",
    "discover_tasks",
    "example_uid",
    "get_task",
    "load_task_data",
    "load_task_file",
    "register_task",
]
