# floodsite images. `app` (web, worker and beat: the command chooses the role) and `proxy`
# (nginx in front of the web server, with the static files collected here).
FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    FLOODSITE_VAR_DIR=/app/var

WORKDIR /app

# libgomp: scikit-learn's HistGradientBoosting uses OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system floodsite \
    && useradd --system --gid floodsite --home-dir /app --shell /usr/sbin/nologin floodsite

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Static files are collected at build time with throwaway settings; nothing here is used at run.
RUN DJANGO_ENV=production \
    DJANGO_SECRET_KEY=build-only-not-a-secret-build-only-not-a-secret-build-only \
    DJANGO_ALLOWED_HOSTS=build \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var/media \
    && chown -R floodsite:floodsite /app/var

USER floodsite
ENV DJANGO_STATIC_ROOT=/app/staticfiles \
    DJANGO_MEDIA_ROOT=/app/var/media
EXPOSE 8000

CMD ["gunicorn", "--config", "gunicorn.conf.py", "floodsite.wsgi"]

# The reverse proxy: Debian's nginx (the one the tests run) with deploy/nginx/nginx.conf.template
# and this build's collected static files, as an unprivileged user on port 8000.
FROM debian:bookworm-slim AS proxy
# gettext-base: envsubst fills the template's placeholders; curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx gettext-base curl \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/floodsite-nginx \
    && chown www-data:www-data /var/lib/floodsite-nginx
COPY --from=app /app/staticfiles /srv/floodsite/static
COPY deploy/nginx/nginx.conf.template /etc/floodsite/nginx.conf.template
USER www-data
ENV FLOODSITE_LISTEN=8000 \
    FLOODSITE_UPSTREAM=web:8000 \
    FLOODSITE_STATIC_ROOT=/srv/floodsite/static
EXPOSE 8000
CMD ["sh", "-c", "envsubst '${FLOODSITE_LISTEN} ${FLOODSITE_UPSTREAM} ${FLOODSITE_STATIC_ROOT}' < /etc/floodsite/nginx.conf.template > /var/lib/floodsite-nginx/nginx.conf && exec nginx -p /var/lib/floodsite-nginx -c /var/lib/floodsite-nginx/nginx.conf -e stderr -g 'daemon off;'"]
