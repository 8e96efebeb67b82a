# vtremoted for Linux hosts with an NVIDIA GPU (NVENC/NVDEC through PyAV's FFmpeg).
#
#   docker build -t vtremoted .
#   printf '%s\n' "$(python3 -c 'import secrets; print(secrets.token_hex(24))')" > token && chmod 600 token
#   docker run --gpus all -e NVIDIA_DRIVER_CAPABILITIES=compute,video,utility \
#       -p 5555:5555 -p 127.0.0.1:9555:9555 -v "$PWD/token:/run/secrets/vtremoted_token:ro" \
#       -v vtremoted-state:/var/lib/vtremoted vtremoted
#
# The NVIDIA Container Toolkit maps the driver's libnvidia-encode / libnvcuvid into the container;
# the image itself carries no CUDA. Intel/AMD (VA-API, QSV): pass --device /dev/dri instead of
# --gpus and add --engine vaapi or qsv. The TLS certificate is made on first start in the state
# volume; its fingerprint is in `docker logs`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,video,utility NVIDIA_VISIBLE_DEVICES=all

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /src \
    && useradd --system --home-dir /var/lib/vtremoted --create-home vtremoted

USER vtremoted
WORKDIR /var/lib/vtremoted
VOLUME ["/var/lib/vtremoted"]
EXPOSE 5555 9555

HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9555/healthz', timeout=4).status != 200)"

ENTRYPOINT ["vtremoted", "--listen", "0.0.0.0:5555", "--token-file", "/run/secrets/vtremoted_token", \
            "--tls", "--tls-dir", "/var/lib/vtremoted", "--metrics", "0.0.0.0:9555"]
CMD ["--engine", "auto", "--max-sessions", "4"]
