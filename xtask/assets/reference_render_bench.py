"""Times W&B's own manifest construction in-process, for `cargo xtask bench render --compare-reference`.

Usage: reference_render_bench.py EXAMPLES_DIR SECONDS CASE...
where CASE is `queue-config/run-spec` (file stems under EXAMPLES_DIR, `none` for no queue
config). Prints one line per case: `<case> <mean µs per render> <best-batch µs per render> <mean µs
per render with the LaunchProject built each time> <objects per render>`, or
`<case> error <message>`.

What is timed is the part of W&B's Kubernetes runner (`KubernetesRunner.run`) that turns a
launch spec into manifests, called in the same order as `run` does: macro substitution,
the refuse-list, the namespace, `_inject_defaults` (Job and API-key Secret) or the
custom-resource steps, and `_prepare_resource` for additional services. Nothing reaches a
cluster: the Kubernetes API calls it makes (create the Secret, create the service) are
answered in-process by stand-ins that return at once, and the queue config is merged into
the run spec's `resource_args.kubernetes` beforehand, as the W&B server does before an agent
pops the item. The inputs are the ones the Rust bench uses: run id `k3x9q2ab`, queue
`gpu-a100`, run queue item `UnVuUXVldWVJdGVtOjQy` and an agent API key.
"""

import asyncio
import contextlib
import copy
import io
import json
import os
import sys
import time
import types

import yaml

# The runner reads these at import; point it at nothing real.
os.environ.setdefault("WANDB_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("WANDB_MODE", "offline")

import kubernetes_asyncio  # noqa: E402
from wandb.sdk.launch._project_spec import LaunchProject  # noqa: E402
from wandb.sdk.launch.registry.local_registry import LocalRegistry  # noqa: E402
from wandb.sdk.launch.runner import kubernetes_runner as kr  # noqa: E402
from wandb.sdk.launch.utils import (  # noqa: E402
    MAX_ENV_LENGTHS,
    make_k8s_label_safe,
    recursive_macro_sub,
    validate_kubernetes_resource_args,
)

RUN_ID = "k3x9q2ab"
QUEUE = "gpu-a100"
RUN_QUEUE_ITEM = "UnVuUXVldWVJdGVtOjQy"
API_KEY = "bench-key-0123456789"
BASE_URL = "https://api.wandb.ai"


class InProcessCoreApi:
    """Answers the Secret calls `_inject_defaults` makes, without a cluster."""

    async def create_namespaced_secret(self, namespace, secret):
        return secret


async def created(api_client, config, namespace=None):
    """Stands in for `kubernetes_asyncio.utils.create_from_dict`."""
    return config


def deep_merge(base, patch):
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def launch_spec(examples, case):
    queue_name, spec_name = case.split("/")
    with open(os.path.join(examples, "run-specs", spec_name + ".json")) as f:
        spec = json.load(f)
    queue = {}
    if queue_name != "none":
        with open(os.path.join(examples, "queue-configs", queue_name + ".yaml")) as f:
            queue = yaml.safe_load(f) or {}
    resource_args = spec.setdefault("resource_args", {})
    resource_args["kubernetes"] = deep_merge(queue, resource_args.get("kubernetes") or {})
    spec["run_id"] = RUN_ID
    return spec


def project(spec, api):
    with contextlib.redirect_stderr(io.StringIO()):  # "Launching job: …" per project
        launch_project = LaunchProject.from_spec(copy.deepcopy(spec), api)
    launch_project.queue_name = QUEUE
    launch_project.run_queue_item_id = RUN_QUEUE_ITEM
    return launch_project


def custom_resource(runner, launch_project, resource_args):
    """The custom-resource branch of `KubernetesRunner.run`, up to the create call."""
    env_vars = launch_project.get_env_vars_dict(runner._api, MAX_ENV_LENGTHS[runner.__class__.__name__])
    kr.add_wandb_env(resource_args, env_vars)
    resource_args["metadata"] = resource_args.get("metadata", {})
    resource_args["metadata"]["labels"] = resource_args["metadata"].get("labels", {})
    resource_args["metadata"]["labels"][kr.WANDB_K8S_LABEL_MONITOR] = "true"
    kr.add_label_to_pods(resource_args, kr.WANDB_K8S_LABEL_MONITOR, "true")
    overrides = {}
    if launch_project.override_args:
        overrides["args"] = launch_project.override_args
    if launch_project.override_entrypoint:
        overrides["command"] = launch_project.override_entrypoint.command
    kr.add_entrypoint_args_overrides(resource_args, overrides)
    kr.inject_restricted_security_context(resource_args)
    runner.get_namespace(resource_args, None)
    return 1


async def batch_job(runner, launch_project, resource_args, image_uri):
    """The Job branch of `KubernetesRunner.run`, up to the create call."""
    core_api = InProcessCoreApi()
    namespace = runner.get_namespace(resource_args, None)
    job, secret = await runner._inject_defaults(resource_args, launch_project, image_uri, namespace, core_api)
    update_dict = {
        "project_name": launch_project.target_project,
        "entity_name": launch_project.target_entity,
        "run_id": launch_project.run_id,
        "run_name": launch_project.name,
        "image_uri": image_uri,
        "author": launch_project.author,
    }
    update_dict.update(os.environ)
    services = recursive_macro_sub(launch_project.launch_spec.get("additional_services", []), update_dict)
    aux = make_k8s_label_safe(
        f"aux-{launch_project.target_entity}-{launch_project.target_project}-{launch_project.run_id}"
    )
    configs = [s.get("config", {}) for s in services if s.get("config", {})]
    for config in configs:
        await runner._prepare_resource(None, config, namespace, RUN_ID, launch_project, secret, False, 300, aux)
    return 1 + (secret is not None) + len(configs)


async def render_once(runner, launch_project):
    image_uri = launch_project.docker_image
    resource_args = launch_project.fill_macros(image_uri).get("kubernetes", {})
    validate_kubernetes_resource_args(resource_args)
    if resource_args.get("apiVersion", "batch/v1") not in ["batch/v1", "batch/v1beta1"]:
        return custom_resource(runner, launch_project, resource_args)
    return await batch_job(runner, launch_project, resource_args, image_uri)


BATCH = 20


async def time_case(runner, api, spec, seconds, with_project):
    """Mean and best-batch microseconds per render, and objects per render; `with_project`
    also builds the `LaunchProject` each time, as the agent does for every queue item."""
    launch_project = project(spec, api)
    objects = await render_once(runner, launch_project)
    renders = 0
    best = float("inf")
    started = time.perf_counter()
    while renders < 2 * BATCH or time.perf_counter() - started < seconds:
        batch = time.perf_counter()
        for _ in range(BATCH):
            if with_project:
                launch_project = project(spec, api)
            await render_once(runner, launch_project)
        best = min(best, time.perf_counter() - batch)
        renders += BATCH
    mean = (time.perf_counter() - started) * 1e6 / renders
    return mean, best * 1e6 / BATCH, objects


def main():
    examples, seconds, cases = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    kubernetes_asyncio.utils.create_from_dict = created
    kr.kubernetes_asyncio.utils.create_from_dict = created
    api = types.SimpleNamespace(settings={"base_url": BASE_URL}, api_key=API_KEY)
    runner = kr.KubernetesRunner(api, {"SYNCHRONOUS": True}, None, LocalRegistry())
    loop = asyncio.new_event_loop()
    for case in cases:
        spec = launch_spec(examples, case)
        try:
            micros, best, objects = loop.run_until_complete(time_case(runner, api, spec, seconds, False))
            with_project, _, _ = loop.run_until_complete(time_case(runner, api, spec, seconds, True))
        except Exception as error:  # the reference refuses some pairs; say so and go on
            print(f"{case} error {type(error).__name__}: {error}".replace("\n", " "), flush=True)
            continue
        print(f"{case} {micros:.2f} {best:.2f} {with_project:.2f} {objects}", flush=True)


if __name__ == "__main__":
    main()
