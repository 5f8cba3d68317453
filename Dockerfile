# aipg-mcp as a Streamable HTTP service: MCP at /mcp, health at /health, on $PORT (default 8081).
#
#   docker build -t aipg-mcp .
#   docker run --rm -p 127.0.0.1:8081:8081 -e AIPG_API_KEY=grid_your-key \
#     -e AIPG_MCP_AUTH_TOKEN="$(openssl rand -hex 32)" aipg-mcp
#
# Bound to 0.0.0.0 inside the container, so it refuses to start without AIPG_MCP_AUTH_TOKEN,
# unless AIPG_MCP_TRUST_PROXY=1 says an authenticating proxy is the only way in (smithery.yaml
# sets it for Smithery's gateway).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md LICENSE /tmp/src/
COPY aipg_mcp /tmp/src/aipg_mcp
# The video extra (PyAV) lets a video result show the model its frames; postgres and s3 let
# replicas share a ledger (AIPG_LEDGER_URL) and a bucket (AIPG_MEDIA_URL), as in deploy/.
RUN python -m pip install "/tmp/src[video,postgres,s3]" \
    && rm -rf /tmp/src \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin aipg

USER aipg
WORKDIR /home/aipg
ENV PORT=8081 \
    AIPG_DATA_DIR=/home/aipg/data \
    AIPG_OUTPUT_DIR=/home/aipg/images

EXPOSE 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8081'), timeout=4)"

CMD ["sh", "-c", "exec aipg-mcp --transport http --host 0.0.0.0 --port ${PORT:-8081}"]
