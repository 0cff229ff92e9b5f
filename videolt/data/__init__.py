"""videolt.data"""
