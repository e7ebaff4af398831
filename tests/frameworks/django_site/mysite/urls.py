from django.urls import path

from . import views

urlpatterns = [
    path("echo/", views.echo),
    path("guarded/", views.guarded),
    path("boom/", views.boom),
]
