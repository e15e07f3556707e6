module github.com/kchat/kchat/services/chatbench

go 1.26

require github.com/kchat/kchat/pkg v0.0.0

replace github.com/kchat/kchat/pkg => ../../pkg
