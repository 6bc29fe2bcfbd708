# Image for the `demo` service of docker-compose.yml: the tracedllm CLI with the OTLP extra.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[otlp]' \
    && useradd --create-home --uid 10001 tracedllm

USER tracedllm
WORKDIR /home/tracedllm
ENTRYPOINT ["tracedllm"]
CMD ["demo"]
