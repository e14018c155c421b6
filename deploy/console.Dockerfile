# The staff console: built with Node.js (the lock file's exact packages), served by deploy/console.py.
FROM node:20-slim AS build
WORKDIR /console
COPY clients/console/package.json clients/console/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY clients/console/ ./
RUN npm run build

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY deploy/__init__.py deploy/console.py deploy/gunicorn.conf.py ./deploy/
RUN pip install . && useradd --system --uid 10001 woodpecker
COPY --from=build /console/dist ./clients/console/dist
USER woodpecker
EXPOSE 8000
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "--workers", "1", "--threads", "4", "-b", "0.0.0.0:8000", "deploy.console:create_app()"]
