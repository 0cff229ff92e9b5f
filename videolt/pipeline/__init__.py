"""videolt.pipeline"""
