"""URLs of the example shop."""

from django.urls import path

from config.shop import product_views, views

app_name = "shop"
urlpatterns = [
    path("", views.index, name="index"),
    path("echo/", views.echo, name="echo"),
    path("delivery/", views.delivery, name="delivery"),
    path("aecho/", views.aecho, name="aecho"),
    path("api/menu/", views.menu, name="menu"),
    path("api/summary/", views.summary, name="summary"),
    path("api/price/<int:pk>/", views.price, name="price"),
    path("api/aprice/<int:pk>/", views.aprice, name="aprice"),
    path("api/rate/<str:currency>/", views.rate, name="rate"),
    path("products/", product_views.product_list, name="products"),
    path("products/<str:sku>/", product_views.product_detail, name="product"),
]
