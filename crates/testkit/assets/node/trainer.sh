# The test "trainer" (busybox sh): what a training script does with W&B, without Python.
# Env: WANDB_BASE_URL, WANDB_API_KEY, WANDB_ENTITY, WANDB_PROJECT, WANDB_RUN_ID (as the
# agent sets them); TRAINER_STEPS (default 3) log lines; TRAINER_ALLOCATE=1 allocates until
# the memory limit kills it; TRAINER_FOREVER=1 runs until SIGTERM, which it reports to W&B
# (an upsertBucket with the description `trainer: SIGTERM`) before exiting 143;
# TRAINER_EXIT_CODE (default 0) is the exit code.
echo "trainer: wandb.init run ${WANDB_RUN_ID} in ${WANDB_ENTITY}/${WANDB_PROJECT}"
auth=$(printf 'api:%s' "$WANDB_API_KEY" | base64 | tr -d '\n')
# upsertBucket creates (or finds) the run, with $1 as its description.
upsert() {
  query='mutation UpsertBucket($name: String, $project: String, $entity: String, $description: String) { upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, description: $description}) { bucket { id name } inserted } }'
  body=$(printf '{"query":"%s","variables":{"name":"%s","project":"%s","entity":"%s","description":"%s"}}' \
    "$query" "$WANDB_RUN_ID" "$WANDB_PROJECT" "$WANDB_ENTITY" "$1")
  wget -q -O - --header "Authorization: Basic $auth" \
    --header "Content-Type: application/json" --post-data "$body" "$WANDB_BASE_URL/graphql"
}
if [ "${TRAINER_FOREVER:-0}" = 1 ]; then
  # Set before wandb.init, so a stop that follows the init always finds the trap.
  trap 'echo "trainer: got SIGTERM"; upsert "trainer: SIGTERM" >/dev/null; exit 143' TERM
fi
# wandb.init's first call.
if ! answer=$(upsert "trainer: init"); then
  echo "trainer: wandb.init failed: cannot reach $WANDB_BASE_URL/graphql" >&2
  exit 1
fi
echo "trainer: wandb.init answered $answer"
i=1
while [ "$i" -le "${TRAINER_STEPS:-3}" ]; do
  echo "trainer: step $i"
  i=$((i + 1))
done
if [ "${TRAINER_ALLOCATE:-0}" = 1 ]; then
  echo "trainer: allocating past the memory limit"
  x=0123456789abcdef
  while true; do x=$x$x; done
fi
if [ "${TRAINER_FOREVER:-0}" = 1 ]; then
  echo "trainer: running until stopped"
  # `wait` returns when a trapped signal arrives; a foreground sleep would delay the trap.
  while true; do
    sleep 3600 &
    wait $!
  done
fi
echo "trainer: exiting with code ${TRAINER_EXIT_CODE:-0}"
exit "${TRAINER_EXIT_CODE:-0}"
