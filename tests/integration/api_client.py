"""Drives orchestrator's /api/v2 with the official apache-airflow-client.

Usage: api_client.py BASE_URL [DAG_ID PARENT_DAG_ID CHILD_DAG_ID]
Credentials (optional): AIRFLOW_TOKEN, a bearer token from /auth/token (the 3.x client
sends no basic auth).
With AIRFLOW_EXPECT=viewer the credentials are a viewer's: reading works, a trigger and a
pause are refused with 403, and a client without credentials gets 401.
Prints one line per step; exits non-zero on the first failure.
"""

import os
import sys
import time
from datetime import datetime, timezone

import airflow_client.client as client
from airflow_client.client.api import dag_api, dag_run_api, task_api, task_instance_api
from airflow_client.client.models import DAGPatchBody, TriggerDAGRunPostBody

base = sys.argv[1]
dag_id = sys.argv[2] if len(sys.argv) > 2 else "api_demo"
parent_id = sys.argv[3] if len(sys.argv) > 3 else "api_parent"
child_id = sys.argv[4] if len(sys.argv) > 4 else "api_child"

config = client.Configuration(host=base)
if os.environ.get("AIRFLOW_TOKEN"):
    config.access_token = os.environ["AIRFLOW_TOKEN"]

DEADLINE = 60.0


def wait_success(runs, dag, run_id):
    start = time.time()
    while True:
        run = runs.get_dag_run(dag, run_id)
        state = run.state.value
        if state in ("success", "failed"):
            assert state == "success", f"run {dag}/{run_id} ended {state}"
            return run
        assert time.time() - start < DEADLINE, f"run {dag}/{run_id} still {state}"
        time.sleep(0.2)


if os.environ.get("AIRFLOW_EXPECT") == "viewer":
    with client.ApiClient(config) as api:
        dags = dag_api.DAGApi(api)
        runs = dag_run_api.DagRunApi(api)
        listed = dags.get_dags(limit=100)
        assert dag_id in [d.dag_id for d in listed.dags], listed
        print("viewer lists dags:", listed.total_entries)
        try:
            runs.trigger_dag_run(dag_id, TriggerDAGRunPostBody(logical_date=None))
            raise AssertionError("a viewer's trigger was accepted")
        except client.exceptions.ForbiddenException as e:
            print("viewer trigger refused:", e.status)
        try:
            dags.patch_dag(dag_id, DAGPatchBody(is_paused=True))
            raise AssertionError("a viewer's pause was accepted")
        except client.exceptions.ForbiddenException as e:
            print("viewer pause refused:", e.status)
    with client.ApiClient(client.Configuration(host=base)) as api:
        try:
            dag_api.DAGApi(api).get_dags()
            raise AssertionError("a client without credentials was answered")
        except client.exceptions.UnauthorizedException as e:
            print("no credentials refused:", e.status)
    print("all ok")
    sys.exit(0)

with client.ApiClient(config) as api:
    dags = dag_api.DAGApi(api)
    runs = dag_run_api.DagRunApi(api)
    tasks = task_api.TaskApi(api)
    tis = task_instance_api.TaskInstanceApi(api)

    listed = dags.get_dags(limit=100)
    ids = [d.dag_id for d in listed.dags]
    assert dag_id in ids, ids
    print("list dags:", listed.total_entries)

    dag = dags.get_dag(dag_id)
    assert dag.dag_id == dag_id
    print("get dag:", dag.dag_id, "paused" if dag.is_paused else "active")

    paused = dags.patch_dag(dag_id, DAGPatchBody(is_paused=True))
    assert paused.is_paused
    unpaused = dags.patch_dag(dag_id, DAGPatchBody(is_paused=False), update_mask=["is_paused"])
    assert not unpaused.is_paused
    print("pause/unpause: ok")

    task_list = tasks.get_tasks(dag_id)
    names = [t.task_id for t in task_list.tasks]
    assert "hello" in names, names
    print("tasks:", names)
    one = tasks.get_task(dag_id, "hello")
    assert one.task_id == "hello" and one.downstream_task_ids == ["after"], one
    print("get task:", one.task_id)

    run = runs.trigger_dag_run(
        dag_id,
        TriggerDAGRunPostBody(dag_run_id="client_run_1", logical_date=None, conf={"who": "client"}, note="from the client"),
    )
    assert run.dag_run_id == "client_run_1"
    assert run.conf == {"who": "client"}, run.conf
    assert run.note == "from the client"
    done = wait_success(runs, dag_id, run.dag_run_id)
    print("trigger + poll:", done.dag_run_id, done.state.value)

    # The client sends datetimes as `2000-01-01T00:00:00.000000+0000` (and naive ones bare).
    since = runs.get_dag_runs(dag_id, logical_date_gte=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert any(r.dag_run_id == "client_run_1" for r in since.dag_runs), since
    naive = runs.get_dag_runs(dag_id, logical_date_gte=datetime(2000, 1, 1))
    assert naive.total_entries == since.total_entries, naive
    future = runs.get_dag_runs(dag_id, logical_date_gte=datetime(2999, 1, 1, tzinfo=timezone.utc))
    assert future.total_entries == 0, future
    print("runs since a date:", since.total_entries)

    instances = tis.get_task_instances(dag_id, run.dag_run_id)
    states = {t.task_id: t.state.value for t in instances.task_instances}
    assert states.get("hello") == "success", states
    print("task instances:", states)

    log = tis.get_log(dag_id, run.dag_run_id, "hello", 1)
    text = "\n".join(m.event for m in log.content.actual_instance)
    assert "hello from conf client" in text, text
    # The try has ended and this is all of its log: no token, so a follow loop ends.
    assert log.continuation_token is None, log.continuation_token
    print("log: ok, complete")

    parent = runs.trigger_dag_run(parent_id, TriggerDAGRunPostBody(logical_date=None))
    wait_success(runs, parent_id, parent.dag_run_id)
    children = runs.get_dag_runs(child_id)
    assert children.total_entries >= 1, children
    child = children.dag_runs[0]
    assert child.run_type.value == "manual", child.run_type
    assert child.triggered_by is not None and child.triggered_by.value == "operator", child.triggered_by
    everyone = runs.get_dag_runs("~", order_by=["-id"])
    assert any(r.dag_id == child_id for r in everyone.dag_runs)
    print("triggered child run:", child.dag_run_id, child.run_type.value)

print("all ok")
