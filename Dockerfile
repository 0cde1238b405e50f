FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app app
COPY agents agents
COPY scripts scripts
RUN pip install --no-cache-dir .
EXPOSE 6066
# the status page, /status.json and /metrics on port 6066 (the web server binds 127.0.0.1
# unless told otherwise)
CMD ["faust", "-A", "app", "worker", "-l", "info", "--web-bind=0.0.0.0", "--web-host=0.0.0.0", "--web-port=6066"]
