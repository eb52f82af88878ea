# podtap's container image: the agent (podtap-agent), the relay (podtap-relay)
# and the CLI (podtap) built on Debian 12 and copied into a slim Debian 12
# with only their runtime libraries. Used by deploy/daemonset and
# deploy/relay (docs/deploy.md):
#   docker build -t podtap:0.1.0 .
#
# vmlinux.h is generated from the build machine's /sys/kernel/btf/vmlinux
# (so build on a Linux host with BTF); the CO-RE programs then run on any
# kernel with BTF.

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev pkg-config cmake make g++ \
      nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev libgmock-dev \
      protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev libnghttp2-dev \
      libcurl4-openssl-dev libyaml-cpp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY agent agent
COPY bpf bpf
COPY cli cli
COPY bench bench
COPY exporter exporter
COPY proto proto
COPY relay relay
COPY tests/unit tests/unit
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build build -j "$(nproc)" --target podtap-agent podtap podtap-relay

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libbpf1 libelf1 zlib1g libspdlog1.10 libgrpc++1.51 libprotobuf32 libnghttp2-14 \
      libcurl4 libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/podtap-agent /usr/local/bin/podtap-agent
COPY --from=build /src/build/podtap /usr/local/bin/podtap
RUN ln -s podtap /usr/local/bin/kubectl-podtap
COPY --from=build /src/build/podtap-relay /usr/local/bin/podtap-relay
ENTRYPOINT ["/usr/local/bin/podtap-agent"]
