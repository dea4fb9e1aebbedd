# floodsite web, worker and beat image: one image, the command chooses the role.
FROM python:3.11-slim

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
