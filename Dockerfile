FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY scoring scoring
COPY streams streams
RUN pip install --no-cache-dir --no-deps .
ENV STREAMSCORE_WEB_HOST=0.0.0.0
EXPOSE 6066
ENTRYPOINT ["streamscore"]
CMD ["worker"]
