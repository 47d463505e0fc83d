# The launch-agent container image: one static binary on distroless, nothing else.
#
#   cargo xtask chart image --release   # builds target/image/launch-agent (static, musl)
#   docker build -t rlaunch/launch-agent:0.1.0 .
#
# - Static: x86_64-unknown-linux-musl, so the base needs no libc; distroless/static brings
#   only the CA roots, /etc/passwd with the nonroot user and tzdata.
# - Non-root: uid/gid 65532 (distroless's `nonroot`), the chart's runAsUser/runAsGroup.
# - Read-only root friendly: the agent writes only under $HOME and /tmp, which the chart
#   mounts as emptyDirs; the image needs no writable path of its own.
# - No git: code jobs from git are checked out by the agent with the `git` CLI; for those,
#   build an image FROM this one's binary on a base that has git.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --chmod=0555 target/image/launch-agent /usr/local/bin/launch-agent
USER 65532:65532
ENV HOME=/home/launch_agent
WORKDIR /home/launch_agent
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/launch-agent"]
