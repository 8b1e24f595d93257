from django.apps import AppConfig


class LearningAppConfig(AppConfig):
    name = "app"
    default_auto_field = "django.db.models.BigAutoField"
