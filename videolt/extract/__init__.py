"""videolt.extract"""
