# burrow-server in a container: the compiled program alone on a distroless
# base, running as an unprivileged user.
#
#   docker build -t burrow-server .
#   docker run -d --name burrow -e BURROW_TOKEN=s3cret \
#     -p 7700:7700 -p 10000-10100:10000-10100 burrow-server --ports 10000-10100
#
# Arguments after the image name are burrow-server flags. Publish the same
# port range that --ports gives (the default, 10000-20000, is more than you
# want to publish one by one). A config file works too: mount it and pass
# --config, e.g. -v /etc/burrow/server.yaml:/etc/burrow/server.yaml:ro
# ... burrow-server --config /etc/burrow/server.yaml (the file must be
# readable by uid 65532, and its ${VAR}s may name only BURROW_* variables).

# Build stage: the pinned Deno compiles the server for this platform into
# dist/burrow-server (`deno compile` downloads its runtime for that).
FROM denoland/deno:2.9.6 AS build
WORKDIR /src
# .dockerignore keeps .git, a local dist/ and test output out of the context,
# so this is always a fresh build of the sources.
COPY . .
RUN deno task compile:server && ./dist/burrow-server --version

# Final stage: distroless "cc" has the glibc and libgcc the compiled Deno
# runtime links against, and nothing else (no shell, no package manager).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/burrow-server /burrow-server
# uid/gid 65532; public ports of 1024 and up need no capability.
USER nonroot
# The control port clients dial. Public ports depend on --ports: publish them with -p.
EXPOSE 7700
# burrow-server runs as PID 1 and stops cleanly (exit 0) on docker stop's SIGTERM.
ENTRYPOINT ["/burrow-server"]
# The generated certificate authority lives in /state: mount a volume there
# (-v burrow-state:/state) so the fingerprint clients pinned survives upgrades.
ENV STATE_DIRECTORY=/state
VOLUME ["/state"]
# No default flags: the program's defaults apply (BURROW_TOKEN from -e, bind
# 0.0.0.0:7700, ports 10000-20000).
CMD []
