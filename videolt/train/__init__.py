"""videolt.train"""
