"""Entry point: `streamlit run streamlit_app.py`. The pages live in resnet_demo.app."""
from resnet_demo.app.main import run

run()
