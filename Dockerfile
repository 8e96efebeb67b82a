# vtremoted for Linux hosts with an NVIDIA GPU (NVENC encode, NVDEC decode through PyAV's FFmpeg).
#
# Intel and AMD GPUs (VA-API, Quick Sync) need another PyAV: see Dockerfile.vaapi. This image
# uses PyAV's PyPI wheel, pinned by requirements/lock.txt (av 18.1.1, FFmpeg 8.1): that wheel
# has h264_nvenc, hevc_nvenc, av1_nvenc, the *_cuvid decoders and the cuda hwaccel device, but
# no VA-API at all (no h264_vaapi, no vaapi device) and its QSV cannot open a device on Linux
# without VA-API. NVENC works here only because the wheel includes it: a PyAV built without
# nvenc would make `--list-engines` say "this FFmpeg build has no h264_nvenc encoder".
#
# Build and check (docs/engines.md):
#   docker build -t vtremoted .
#   docker run --rm --gpus all vtremoted --list-engines        # nvenc ... available
#   docker run --rm --gpus all vtremoted --self-test --engine nvenc --json > selftest.json
# Without the GPU (no --gpus, or a host without the NVIDIA Container Toolkit) --list-engines
# says "nvenc unavailable ... Cannot load libcuda.so.1".
#
# Run: the token file must be readable by the image's user, UID/GID 10001 (fixed, below):
#   python3 -c 'import secrets; print(secrets.token_hex(24))' > token
#   sudo chown 10001:10001 token && sudo chmod 600 token
#   docker run -d --gpus all -p 5555:5555 -p 127.0.0.1:9555:9555 \
#       -v "$PWD/token:/run/secrets/vtremoted_token:ro" -v vtremoted-state:/var/lib/vtremoted vtremoted
# A token file owned by your own user with mode 600 is unreadable inside the container
# ("cannot read --token-file ...: Permission denied", exit 2). The TLS certificate is made on
# first start in the state volume; its fingerprint is in `docker logs`.
#
# The NVIDIA Container Toolkit maps the host driver's libcuda, libnvidia-encode and libnvcuvid
# into the container when NVIDIA_DRIVER_CAPABILITIES includes "video" (set below; "compute"
# for CUDA, "utility" for nvidia-smi); the image itself carries no CUDA.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,video,utility NVIDIA_VISIBLE_DEVICES=all

WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/lock.txt ./requirements/lock.txt
COPY src ./src
# The tested versions (requirements/lock.txt), so the PyAV wheel is the one described above.
RUN pip install -c requirements/lock.txt . && rm -rf /src \
    && groupadd --system --gid 10001 vtremoted \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/vtremoted --create-home \
       vtremoted

USER 10001:10001
WORKDIR /var/lib/vtremoted
VOLUME ["/var/lib/vtremoted"]
EXPOSE 5555 9555

HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9555/healthz', timeout=4).status != 200)"

ENTRYPOINT ["vtremoted", "--listen", "0.0.0.0:5555", "--token-file", "/run/secrets/vtremoted_token", \
            "--tls", "--tls-dir", "/var/lib/vtremoted", "--metrics", "0.0.0.0:9555"]
CMD ["--engine", "auto", "--max-sessions", "4"]
