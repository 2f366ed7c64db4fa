from django.apps import AppConfig


class ErpSyncConfig(AppConfig):
    name = "erp_sync"
    verbose_name = "ERP sync"
