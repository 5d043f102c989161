package api

import (
	"github.com/gin-gonic/gin"
	swaggerfiles "github.com/swaggo/files"
	ginswagger "github.com/swaggo/gin-swagger"

	"github.com/cloudservers/cloudservers/docs"
)

// swagger serves the generated spec and the Swagger UI under /swagger/.
func (s *Server) swagger(r *gin.Engine) {
	docs.SwaggerInfo.BasePath = "/"
	r.GET("/swagger/*any", ginswagger.WrapHandler(swaggerfiles.Handler))
}
