"""Packaging of ampel-monitor. Exact versions for CI live in constraints.txt."""

from setuptools import find_packages, setup

#: Dashboards as code (dashboards/): the SDK generated for Grafana 11.6.
GRAFANA_SDK = "grafana-foundation-sdk==1769699379!11.6.0"

setup(
    name="ampel-monitor",
    version="0.1.0",
    description="Streaming performance and drift monitoring of ML models on Apache Beam",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["ampel_monitor*", "sketches*", "drift*", "transforms*", "pipelines*", "schemas*"]),
    package_data={"": ["py.typed"], "schemas": ["*.avsc"]},
    install_requires=[
        "apache-beam>=2.77,<3",
        "numpy>=2.0,<3",
        "scipy>=1.13,<2",
        "pyarrow>=16,<27",
        "fastavro>=1.9,<2",
        "numba>=0.61,<1",
        "pyyaml>=6.0,<7",
        "prometheus-client>=0.20,<1",
        "confluent-kafka>=2.6,<3",
        "orjson>=3.10,<4",
        "xxhash>=3.4,<5",
        "protobuf>=4.25,<7",
        "cramjam>=2.8,<3",
        "requests>=2.31,<3",
        "elasticsearch>=8.13,<9",
        "plotly>=6.0,<8",
    ],
    extras_require={
        "opensearch": ["opensearch-py>=2.6,<4"],
        # exact: the SDK's releases carry an epoch, so any range would also admit older Grafana versions
        "dashboards": [GRAFANA_SDK],
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7", "aiosmtpd>=1.4,<2", "opensearch-py>=2.6,<4",
                 "scikit-learn>=1.5,<2", "statsmodels>=0.14,<1", "fairlearn>=0.12,<1", "river>=0.22,<1",
                 "selenium>=4.30,<5", GRAFANA_SDK, "jsonschema>=4.23,<5",
                 "promql-parser>=0.12,<0.13", "kubernetes-validate>=1.33,<2"],
        "bench": ["ddsketch>=3,<4", "datasketches>=5,<6", "psutil>=5.9,<8"],
    },
    entry_points={"console_scripts": ["ampel-monitor=ampel_monitor.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
