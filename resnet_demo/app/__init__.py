"""The Streamlit classroom app, on top of the core. Only this package imports Streamlit and plotly."""
