from app.views import line_pronunciations
from django.urls import path

urlpatterns = [path("lines/<int:line_id>/pronunciations/", line_pronunciations)]
