# The MTV services and mtvctl, for docker-compose.yml and the Helm chart.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY services ./services
# Generated protobuf code is built at image build time, as `make gen` does locally; never committed.
RUN pip install --no-cache-dir . \
 && python -m grpc_tools.protoc -I proto --python_out=/tmp/gen --grpc_python_out=/tmp/gen proto/mtv/v1/*.proto \
 && cp -r /tmp/gen/mtv/v1 "$(python -c 'import mtv, os; print(os.path.dirname(mtv.__file__))')/" \
 && rm -rf /tmp/gen
USER 1001
ENV MTV_HTTP_HOST=0.0.0.0 MTV_HTTP_PORT=8080
EXPOSE 8080
