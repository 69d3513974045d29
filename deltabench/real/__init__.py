"""Real domains from official pretrained weights: ``ffhq`` (1024 px) and LSUN cat / church /
horse (256 px). Configs are data (``deltabench/configs/domains/*.json``); weights are local
files fetched with ``deltabench weights fetch``. Nothing is downloaded at import time."""

from deltabench.real.domain import (
    RealDomain,
    RealDomainConfig,
    domain_names,
    load_domain_config,
    load_real_domain,
)

__all__ = ["RealDomain", "RealDomainConfig", "domain_names", "load_domain_config", "load_real_domain"]
